// The classifier's page: pick or drop a photo, reduce it, POST it to the prediction API, show the answer.
//
// Plain script, no framework or build step. The site's Content-Security-Policy (stacks/security_headers.py:
// CloudFront and `make serve` send it) allows this file and style.css only, no inline script or style:
// the probability bars are <meter> elements rather than styled widths. The DOM is built with
// createElement and textContent, never from HTML strings (nothing a breed name holds can become markup,
// and the page would run under Trusted Types as it is).
"use strict";

(() => {
  // Relative: the API is /api/predict on the page's own origin (CloudFront forwards it to the Lambda).
  const API_URL = "api/predict?top_k=5";
  // The short side the photo is reduced to before upload. The model resizes the short side to
  // image_size / 0.875 and keeps the centre image_size square (inference/preprocessing.py: 256 and 224
  // for the default --image-size), so what an upload has beyond that is decoded and thrown away. 512 is
  // twice that resize: the endpoint's own antialiased 2:1 resize (a draft JPEG decode at 1/2 scale)
  // still averages away this canvas resampling and the JPEG re-encoding, and a model trained at up to
  // --image-size 448 loses nothing. Measured in headless Chromium 150 on the benchmarks' generated
  // photos (bench/images.py, 2-core host): the 12 MP 2.2 MB one becomes 683x512, 45 KB (256: 19 KB),
  // in ~80 ms of decode and 15 ms of resize + encode. docs/benchmarks.md prices the difference on the
  // server: 0.23 ms of Lambda work (base64, validation) and 3.4 ms of decode + preset for a 67 KB
  // 640x480 photo against 7.5 ms and 25.2 ms for the 2.3 MB phone photo, and the upload shrinks ~48x
  // (2.2 MB takes ~1.8 s on a 10 Mbit/s mobile uplink, 45 KB ~40 ms).
  const MAX_SHORT_SIDE = 512;
  const JPEG_QUALITY = 0.9; // the benchmarks' photos are quality 90 too
  // 503 model_starting: the API asks for Retry-After 60 s (api_errors.MODEL_STARTING_RETRY_AFTER_SECONDS);
  // a cold start takes "several minutes", so ten automatic retries cover it before the page gives up.
  const MODEL_STARTING_DEFAULT_SECONDS = 60;
  const MAX_AUTOMATIC_RETRIES = 10;

  const byId = (id) => document.getElementById(id);
  const ui = {
    dropZone: byId("drop-zone"),
    input: byId("photo"),
    chosenFile: byId("chosen-file"),
    status: byId("status"),
    problem: byId("problem"),
    problemTitle: byId("problem-title"),
    problemDetail: byId("problem-detail"),
    problemApiMessage: byId("problem-api-message"),
    problemCountdown: byId("problem-countdown"),
    problemRequest: byId("problem-request"),
    retry: byId("retry"),
    stopRetry: byId("stop-retry"),
    preview: byId("preview"),
    previewImage: byId("preview-image"),
    previewCaption: byId("preview-caption"),
    results: byId("results"),
    predictions: byId("predictions"),
    model: byId("model"),
    requestId: byId("request-id"),
  };

  // The photo being classified: a new pick replaces it, and cancels its request and retry timer.
  let job = null;
  let previewUrl = null;

  // --- choosing a photo --------------------------------------------------------------------------

  ui.input.addEventListener("change", () => {
    if (!ui.input.files || ui.input.files.length === 0) return;
    const file = ui.input.files[0];
    // Emptied at once (the File object stays readable): a browser fires no change for the file the
    // input already holds, so choosing the same photo again, after a 413 or an unreadable file, would
    // otherwise do nothing. #chosen-file shows its name instead of the input.
    ui.input.value = "";
    start(classify(file));
  });
  ui.dropZone.addEventListener("click", () => ui.input.click());
  ui.dropZone.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault(); // Space would scroll the page
      ui.input.click();
    }
  });
  ui.dropZone.addEventListener("dragover", (event) => {
    event.preventDefault(); // allows the drop
    ui.dropZone.classList.add("dragging");
  });
  ui.dropZone.addEventListener("dragleave", () => ui.dropZone.classList.remove("dragging"));
  ui.dropZone.addEventListener("drop", (event) => {
    event.preventDefault();
    ui.dropZone.classList.remove("dragging");
    const files = event.dataTransfer ? event.dataTransfer.files : null;
    if (files && files.length > 0) {
      start(classify(files[0]));
    } else {
      setStatus("Nothing to classify: drop a photo file, not a link or text.");
    }
  });
  // A file dropped next to the box would otherwise replace the page with the file.
  for (const type of ["dragover", "drop"]) {
    window.addEventListener(type, (event) => event.preventDefault());
  }
  ui.retry.addEventListener("click", () => {
    if (job) start(send(job), job);
  });
  ui.stopRetry.addEventListener("click", () => {
    if (!job) return;
    clearTimeout(job.timer);
    job.timer = null;
    ui.problemCountdown.hidden = true;
    ui.stopRetry.hidden = true;
    ui.retry.hidden = false;
    setStatus("Stopped retrying. Choose Try again when you want to.");
  });

  // Runs one of the async steps below from an event: whatever it did not expect (a browser API that
  // throws) ends in a message on the page rather than in an unhandled promise rejection.
  function start(promise, current = job) {
    promise.catch((error) => {
      console.error(error);
      if (current && job !== current) return; // a newer photo owns the page
      finish();
      showProblem(current, {
        title: "Something went wrong on this page",
        detail: "The page could not finish classifying this photo. Reload the page and try again.",
        retry: "none",
      });
    });
  }

  async function classify(file) {
    cancel();
    const current = { file, upload: null, controller: null, timer: null, retries: 0 };
    job = current;
    finish(); // an aborted request's busy state
    hideProblem();
    ui.results.hidden = true;
    ui.preview.hidden = true;
    ui.chosenFile.textContent = `Chosen: ${file.name}`;
    setStatus(`Preparing ${file.name} ...`);
    let upload;
    try {
      upload = await prepareUpload(file);
    } catch {
      // The file went away or cannot be read (a cloud placeholder, a revoked permission).
      if (job === current) {
        showProblem(current, {
          title: "This file could not be read",
          detail: "Your browser could not read the file. Choose it again, or choose another photo.",
          retry: "none",
        });
      }
      return;
    }
    if (job !== current) return; // another photo was chosen meanwhile
    current.upload = upload;
    showPreview(upload, file);
    await send(current);
  }

  function cancel() {
    if (!job) return;
    if (job.controller) job.controller.abort();
    clearTimeout(job.timer);
    job = null;
  }

  // The bytes to send: the photo reduced to MAX_SHORT_SIDE as JPEG when this browser can decode it (EXIF
  // orientation applied: createImageBitmap's default), else the file as it is. The API, not the page,
  // decides what is an image: a text file or a HEIC photo goes as it is and the answer says why not.
  async function prepareUpload(file) {
    let bitmap;
    try {
      bitmap = await createImageBitmap(file);
    } catch {
      return original(file);
    }
    try {
      const scale = Math.min(1, MAX_SHORT_SIDE / Math.min(bitmap.width, bitmap.height));
      const width = Math.max(1, Math.round(bitmap.width * scale));
      const height = Math.max(1, Math.round(bitmap.height * scale));
      const canvas = document.createElement("canvas");
      canvas.width = width;
      canvas.height = height;
      const context = canvas.getContext("2d");
      context.fillStyle = "#ffffff"; // transparent pixels of a PNG become white, not black, in a JPEG
      context.fillRect(0, 0, width, height);
      context.imageSmoothingEnabled = true;
      context.imageSmoothingQuality = "high";
      context.drawImage(bitmap, 0, 0, width, height);
      const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", JPEG_QUALITY));
      if (!blob) return original(file); // a canvas too large for this browser to encode
      return {
        bytes: await blob.arrayBuffer(),
        type: "image/jpeg",
        reencoded: true,
        width,
        height,
        originalWidth: bitmap.width,
        originalHeight: bitmap.height,
      };
    } finally {
      bitmap.close();
    }
  }

  async function original(file) {
    return { bytes: await file.arrayBuffer(), type: file.type || "application/octet-stream", reencoded: false };
  }

  function showPreview(upload, file) {
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = null;
    ui.preview.hidden = false;
    if (upload.reencoded) {
      previewUrl = URL.createObjectURL(new Blob([upload.bytes], { type: upload.type }));
      ui.previewImage.src = previewUrl;
      ui.previewImage.alt = `Your photo ${file.name}, as sent`;
      ui.previewImage.hidden = false;
      const from = `${upload.originalWidth} × ${upload.originalHeight}`;
      ui.previewCaption.textContent =
        `${file.name}: sent as a ${upload.width} × ${upload.height} JPEG of ${kilobytes(upload.bytes)}` +
        (upload.width !== upload.originalWidth ? ` (reduced from ${from})` : "");
    } else {
      ui.previewImage.removeAttribute("src");
      ui.previewImage.hidden = true;
      ui.previewCaption.textContent =
        `${file.name}: no preview, this browser cannot open the file as an image. ` +
        `It is sent as it is (${kilobytes(upload.bytes)}, ${upload.type}).`;
    }
  }

  // --- the request -------------------------------------------------------------------------------

  // automatic: a retry after 503 model_starting, which keeps the problem on screen (no flicker each
  // minute) and says in the countdown line and the status that it is trying again.
  async function send(current, { automatic = false } = {}) {
    clearTimeout(current.timer);
    current.timer = null;
    if (automatic) {
      ui.stopRetry.hidden = true; // nothing to stop while the request is out; it is back after
      ui.problemCountdown.textContent =
        `Trying again now (attempt ${current.retries + 1} of ${MAX_AUTOMATIC_RETRIES + 1}) ...`;
    } else {
      hideProblem();
    }
    // crypto.subtle exists only in a secure context: an https:// page, or http://localhost.
    if (!window.isSecureContext || !window.crypto || !window.crypto.subtle) {
      showProblem(current, {
        title: "This page cannot send photos from this address",
        detail:
          "Browsers compute the checksum the service requires only on https:// pages " +
          "(or on localhost). Open the page through its https:// address.",
        retry: "none",
      });
      return;
    }
    const upload = current.upload;
    setStatus(
      automatic
        ? `Trying again: classifying ${current.file.name} ...`
        : `Classifying ${current.file.name} (${kilobytes(upload.bytes)}) ...`,
    );
    ui.retry.disabled = true;
    ui.results.setAttribute("aria-busy", "true");
    try {
      await request(current, upload);
    } finally {
      if (job === current) finish();
    }
  }

  async function request(current, upload) {
    let hash;
    try {
      // CloudFront signs the request to the Lambda function URL with this hash: Lambda refuses a POST
      // without the SHA-256 of its exact body (lowercase hex) in x-amz-content-sha256, with a 403.
      hash = await sha256Hex(upload.bytes);
    } catch {
      if (job !== current) return;
      showProblem(current, {
        title: "This photo could not be prepared for sending",
        detail:
          "Your browser could not compute the checksum the service requires. Reload the page and try again.",
        retry: "manual",
      });
      return;
    }
    if (job !== current) return;
    current.controller = new AbortController();
    let response;
    let text;
    try {
      response = await fetch(API_URL, {
        method: "POST",
        headers: { "content-type": upload.type, "x-amz-content-sha256": hash },
        body: upload.bytes,
        signal: current.controller.signal,
        cache: "no-store",
        credentials: "same-origin",
      });
      text = await response.text();
    } catch {
      if (job !== current) return; // aborted: another photo was chosen
      showProblem(current, {
        title: "Could not reach the classifier",
        detail: "The request did not get an answer. Check your internet connection and try again.",
        retry: "manual",
      });
      return;
    }
    if (job !== current) return;
    const answer = readAnswer(response, text);
    const predictions = answer.status === 200 ? validPredictions(answer.body) : null;
    if (predictions) {
      showResults(current, answer, predictions);
    } else {
      showProblem(current, describeProblem(answer), answer);
    }
  }

  function finish() {
    ui.retry.disabled = false;
    ui.results.removeAttribute("aria-busy");
  }

  async function sha256Hex(bytes) {
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
    return Array.from(digest, (byte) => byte.toString(16).padStart(2, "0")).join("");
  }

  // The answer as far as it can be read: any status, a JSON body or none (CloudFront's and the
  // firewall's own pages are HTML), the request id from the body or the x-request-id header.
  // Three shapes of JSON: the API's {"error": {"code", "message"}, "request_id"}, the firewall's rate
  // limit {"error": {"code": "rate_limited", ...}}, and an AWS service's own error, which Lambda's
  // Function URL answers before the function runs: {"message": ...} or {"Message": ...}, with its type
  // in the x-amzn-errortype header (InvalidSignatureException, AccessDeniedException, ...).
  function readAnswer(response, text) {
    let body = null;
    try {
      body = JSON.parse(text);
    } catch {
      body = null;
    }
    if (typeof body !== "object" || body === null || Array.isArray(body)) body = null;
    const error = body && typeof body.error === "object" && body.error !== null ? body.error : null;
    const stringOf = (value) => (typeof value === "string" ? value : "");
    const message = error ? stringOf(error.message) : "";
    return {
      status: response.status,
      body,
      code: error ? stringOf(error.code) : "",
      // The API's own message; an AWS service's answer has "message" (or "Message") at the top.
      message: message || (body ? stringOf(body.message) || stringOf(body.Message) : ""),
      // "InvalidSignatureException", sometimes followed by ":" and a URL of the type's definition.
      errorType: (response.headers.get("x-amzn-errortype") || "").split(":", 1)[0].trim(),
      requestId:
        (body && typeof body.request_id === "string" && body.request_id) ||
        response.headers.get("x-request-id") ||
        "",
      // CloudFront's id for the request, which its operator can look up when the API never saw it.
      edgeId: response.headers.get("x-amz-cf-id") || "",
      retryAfter: parseRetryAfter(response.headers.get("retry-after")),
    };
  }

  function validPredictions(body) {
    if (!body || !Array.isArray(body.predictions) || body.predictions.length === 0) return null;
    const valid = body.predictions.every(
      (p) => p && typeof p.breed === "string" && typeof p.probability === "number" &&
        p.probability >= 0 && p.probability <= 1,
    );
    return valid ? body.predictions : null;
  }

  // Retry-After is seconds or an HTTP date (RFC 9110, 10.2.3); null when absent or unreadable.
  function parseRetryAfter(value) {
    if (!value) return null;
    const text = value.trim();
    let seconds = /^\d+$/.test(text) ? Number(text) : (Date.parse(text) - Date.now()) / 1000;
    if (!Number.isFinite(seconds)) return null;
    seconds = Math.ceil(seconds);
    return Math.min(Math.max(seconds, 1), 3600);
  }

  // --- what to tell the user ---------------------------------------------------------------------

  // One entry per row of the API's status table (docs/serving.md), plus what the front door answers
  // itself. By status first: a 413 or a 504 means the same whether the API, Lambda's Function URL or
  // CloudFront said it, and only the API's answers are its JSON (CloudFront's and its firewall's are
  // HTML pages, Lambda's an AWS error or nothing). Then, where one status has several causes, by who
  // answered: the API's error.code, Lambda's x-amzn-errortype, or a page that is not JSON at all.
  // "Unexpected answer" is left for a status the table does not have.
  function describeProblem(answer) {
    const status = answer.status;
    const wait = answer.retryAfter;
    const inWait = wait ? `in ${duration(wait)}` : "in a moment";
    switch (status) {
      case 200:
        if (!answer.body) return unexpected(answer);
        return {
          title: "The answer could not be read",
          detail: "The service answered without predictions. Try again in a minute.",
          retry: "manual",
        };
      case 400:
        return {
          title: "This file could not be classified (HTTP 400)",
          detail: "The service could not use it as a photo. Choose a JPEG, PNG or WebP photo.",
          retry: "none",
        };
      case 403:
        return forbidden(answer);
      case 413:
        return {
          title: "This photo is too large (HTTP 413)",
          detail: "Choose a smaller photo, or one your browser can open, so that the page can reduce it.",
          retry: "none",
        };
      case 415:
        return {
          title: "This file type is not supported (HTTP 415)",
          detail: "Choose a JPEG, PNG or WebP photo.",
          retry: "none",
        };
      case 429:
        // The firewall's rate rule answers {"error": {"code": "rate_limited"}}; the API's own 429 is
        // "throttled", Lambda's (the function's concurrency is used up) an AWS error: both are busy.
        if (answer.code === "rate_limited" || !answer.body) {
          return {
            title: "Too many requests from your network (HTTP 429)",
            detail:
              "The site's firewall limits how many photos one address may send in a few minutes. " +
              `Wait ${wait ? duration(wait) : "a few minutes"} and try again.`,
            retry: "manual",
          };
        }
        return {
          title: "The classifier is busy (HTTP 429)",
          detail: `Too many photos are being classified right now. Try again ${inWait}.`,
          retry: "manual",
        };
      case 502:
        if (answer.code === "model_error") {
          return {
            title: "The classifier failed on this photo (HTTP 502)",
            detail: "Try again; if it fails again, try another photo.",
            retry: "manual",
          };
        }
        return {
          title: "The classifier could not answer (HTTP 502)",
          detail:
            "Something between you and the classifier, or the classifier itself, failed. Try again in " +
            "a minute; if it keeps failing, send the reference below to the site's operator.",
          retry: "manual",
        };
      case 503:
        if (answer.code === "model_starting") {
          return {
            title: "The classifier is starting (HTTP 503)",
            detail:
              "It shuts down while nobody uses it and takes a few minutes to start again. This page " +
              "tries again by itself; you can leave it open.",
            retry: "automatic",
            wait: wait || MODEL_STARTING_DEFAULT_SECONDS,
          };
        }
        return {
          title: "The classifier is unavailable (HTTP 503)",
          detail: `Try again ${inWait}.`,
          retry: "manual",
        };
      case 504:
        return {
          title: "The classifier took too long to answer (HTTP 504)",
          detail: "Try again in a moment.",
          retry: "manual",
        };
      default:
        return unexpected(answer);
    }
  }

  // Three 403s, none of them the API's (docs/serving.md, Web page): Lambda's refusal of the payload
  // hash (JSON, x-amzn-errortype InvalidSignatureException); Lambda's refusal of the site itself
  // ({"Message": "Forbidden"}, AccessDeniedException: CloudFront's origin access control is not
  // allowed to invoke the function); and the firewall's, which is CloudFront's HTML error page.
  function forbidden(answer) {
    const signature = answer.errorType === "InvalidSignatureException";
    if (signature || (answer.body && /signature/i.test(answer.message))) {
      return {
        title: "The service refused the request (HTTP 403)",
        detail: "Its check of the upload's checksum failed. Reload the page and try again.",
        retry: "manual",
      };
    }
    if (answer.body) {
      return {
        title: "The site is not allowed to reach the classifier (HTTP 403)",
        detail:
          "The classifier refused the site's own request: a problem with the site's set-up, not with " +
          "your photo or your network. Try again later; if it keeps happening, send the reference below " +
          "to the site's operator.",
        retry: "manual",
      };
    }
    return {
      title: "Blocked by the site's firewall (HTTP 403)",
      detail:
        "The site's firewall did not let this request through. This can happen on some networks or " +
        "VPNs. Wait a few minutes and try again; if it keeps happening, send the reference below to " +
        "the site's operator.",
      retry: "manual",
    };
  }

  function unexpected(answer) {
    return {
      title: `Unexpected answer from the server (HTTP ${answer.status})`,
      detail: answer.body
        ? "Try again in a minute."
        : "The answer was not the classifier's: the site may be being updated, or something between " +
          "you and it failed. Try again in a minute.",
      retry: "manual",
    };
  }

  function showProblem(current, problem, answer) {
    ui.results.hidden = true;
    ui.problem.hidden = false;
    ui.problemTitle.textContent = problem.title;
    ui.problemDetail.textContent = problem.detail;
    const message = answer && answer.message;
    ui.problemApiMessage.hidden = !message;
    ui.problemApiMessage.textContent = message ? `The service said: “${message}”` : "";
    const reference = answer ? referenceText(answer) : "";
    ui.problemRequest.hidden = !reference;
    ui.problemRequest.textContent = reference;
    ui.retry.hidden = problem.retry !== "manual";
    ui.stopRetry.hidden = true;
    ui.problemCountdown.hidden = true;
    let spoken = `${problem.title}. ${problem.detail}`;
    if (problem.retry === "automatic") {
      if (current.retries < MAX_AUTOMATIC_RETRIES) {
        current.retries += 1;
        scheduleRetry(current, problem.wait);
        spoken += ` Trying again in ${duration(problem.wait)}.`;
      } else {
        ui.retry.hidden = false;
        spoken += ` It has not started after ${MAX_AUTOMATIC_RETRIES} tries: try again later.`;
      }
    }
    setStatus(spoken);
  }

  // Counts down in a region screen readers do not announce every second; the status said it once.
  function scheduleRetry(current, seconds) {
    const due = Date.now() + seconds * 1000;
    ui.stopRetry.hidden = false;
    ui.problemCountdown.hidden = false;
    const tick = () => {
      if (job !== current) return;
      const left = Math.ceil((due - Date.now()) / 1000);
      if (left <= 0) {
        start(send(current, { automatic: true }), current);
        return;
      }
      ui.problemCountdown.textContent =
        `Trying again in ${duration(left)} (attempt ${current.retries + 1} of ${MAX_AUTOMATIC_RETRIES + 1}).`;
      current.timer = setTimeout(tick, Math.min(1000, due - Date.now()));
    };
    tick();
  }

  function hideProblem() {
    ui.problem.hidden = true;
    ui.problemCountdown.hidden = true;
    ui.retry.hidden = true;
    ui.stopRetry.hidden = true;
  }

  function showResults(current, answer, predictions) {
    const rows = predictions.map((prediction) => {
      // The <li> keeps its list-item display, and so its rank number; the grid is inside it.
      const row = document.createElement("li");
      const grid = document.createElement("div");
      grid.className = "prediction";
      const name = document.createElement("span");
      name.className = "breed";
      name.textContent = prediction.breed;
      // The bar repeats the percentage next to it, so assistive technology reads only the text.
      const bar = document.createElement("meter");
      bar.min = 0;
      bar.max = 1;
      bar.value = prediction.probability;
      bar.setAttribute("aria-hidden", "true");
      const share = document.createElement("span");
      share.className = "probability";
      share.textContent = percent(prediction.probability);
      grid.append(name, bar, share);
      row.append(grid);
      return row;
    });
    ui.predictions.replaceChildren(...rows);
    const model = answer.body.model;
    const described = model && typeof model === "object" ? modelText(model) : "";
    ui.model.textContent = described;
    ui.model.hidden = !described;
    ui.requestId.textContent = referenceText(answer);
    hideProblem(); // still shown after an automatic retry
    ui.results.hidden = false;
    const top = predictions[0];
    setStatus(`Done: most likely ${top.breed} (${percent(top.probability)}), for ${current.file.name}.`);
  }

  function modelText(model) {
    const parts = [];
    if (typeof model.arch === "string") parts.push(model.arch);
    if (typeof model.num_classes === "number") parts.push(`${model.num_classes} breeds`);
    if (typeof model.version === "string") parts.push(`version ${model.version}`);
    return parts.length ? `Model: ${parts.join(", ")}.` : "";
  }

  function referenceText(answer) {
    if (answer.requestId) return `Request id: ${answer.requestId}`;
    if (answer.edgeId) return `CloudFront reference: ${answer.edgeId}`;
    return "";
  }

  function setStatus(text) {
    ui.status.textContent = text;
  }

  function percent(probability) {
    return probability > 0 && probability < 0.0005 ? "<0.1%" : `${(probability * 100).toFixed(1)}%`;
  }

  function kilobytes(bytes) {
    const n = bytes.byteLength;
    return n < 1024 ? `${n} bytes` : `${Math.round(n / 1024)} KB`;
  }

  function duration(seconds) {
    if (seconds < 90) return seconds === 1 ? "1 second" : `${seconds} seconds`;
    return `${Math.round(seconds / 60)} minutes`;
  }
})();
