"""The web page's security headers: CloudFront's response headers policy (stacks/constructs/front_door.py)
sends them, and `make serve` (localdev/serve.py) sends the same ones, so the browser test runs the page
under the policy production enforces. Plain strings: no CDK import, the local server loads this too."""

from __future__ import annotations

# Everything from the page's own origin and nothing else: no inline script or style, no framing, no
# form posts or <base> rewrites. img-src admits blob: and data: for the preview of the chosen photo.
# Trusted Types with no policy: the page writes text only (textContent), so any HTML sink a future edit or
# an injected script reaches (innerHTML, eval) throws in browsers that enforce it.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "require-trusted-types-for 'script'; trusted-types 'none'"
)
# Two years, the preload list's recommendation (https://hstspreload.org/#deployment-recommendations).
HSTS_MAX_AGE_SECONDS = 63_072_000

SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "strict-transport-security": f"max-age={HSTS_MAX_AGE_SECONDS}; includeSubDomains",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
}
