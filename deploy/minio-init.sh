#!/bin/sh
# minio-init (docker-compose.yml), once MinIO answers: the artifact bucket, private, and the platform's own MinIO
# user (AWS_ACCESS_KEY_ID), allowed that bucket's objects and nothing else; the root credentials stay with MinIO
# and this one-shot. Every step can run again (each `docker-compose up` does).
set -eu

for name in MINIO_ROOT_USER MINIO_ROOT_PASSWORD AWS_SECRET_ACCESS_KEY; do  # placeholders of .env.example refused
    eval "value=\${$name:-}"
    case "$value" in
        "" | *change-me*) echo "minio-init: $name is empty or still the placeholder of .env.example" >&2; exit 1 ;;
    esac
done

mc alias set store http://minio:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null
mc mb --ignore-existing "store/$BUCKET"
mc anonymous set none "store/$BUCKET" >/dev/null

policy=/tmp/lienthong-artifacts-policy.json
cat >"$policy" <<JSON
{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetBucketLocation", "s3:ListBucketMultipartUploads"],
     "Resource": ["arn:aws:s3:::$BUCKET"]},
    {"Effect": "Allow",
     "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload",
                "s3:ListMultipartUploadParts"],
     "Resource": ["arn:aws:s3:::$BUCKET/*"]}
  ]
}
JSON
mc admin policy create store lienthong-artifacts "$policy" >/dev/null
mc admin user add store "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" >/dev/null
# attach refuses a policy already attached: then the user's information names it
mc admin policy attach store lienthong-artifacts --user "$AWS_ACCESS_KEY_ID" >/dev/null 2>&1 \
    || mc admin user info store "$AWS_ACCESS_KEY_ID" | grep -q lienthong-artifacts
echo "minio-init: bucket $BUCKET ready; user $AWS_ACCESS_KEY_ID may use its objects only"
