"""Prediction API (minimal first version; the serving issue hardens it)."""

import base64
import json
import os

import boto3

ENDPOINT_NAME = os.environ["ENDPOINT_NAME"]
_runtime = boto3.client("sagemaker-runtime")


def handler(event, context):
    body = event.get("body", "")
    image = base64.b64decode(body) if event.get("isBase64Encoded") else base64.b64decode(event["image"])
    response = _runtime.invoke_endpoint(EndpointName=ENDPOINT_NAME, ContentType="application/x-image", Body=image)
    return {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": response["Body"].read().decode()}
