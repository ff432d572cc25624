"""How the stage's kept resources (key, buckets, production log groups, the model registry) are kept."""

from __future__ import annotations

from aws_cdk import RemovalPolicy

# Kept on stack deletion and replacement, but deleted when the stack's first create rolls back
# (DeletionPolicy RetainExceptOnCreate): a failed first deploy (a GPU quota, a slow container start) then
# leaves no bucket under the fixed name behind, and the retry does not fail with "already exists"
# (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-attribute-deletionpolicy.html).
RETAIN_EXCEPT_ON_CREATE = RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE
