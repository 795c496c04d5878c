"""Starts moto's S3 server for the tests (scripts/test runs it in moto's venv).

moto answers a few S3 requests differently from S3; these are put right here, so that the
conformance suite checks the backend against S3's behaviour (arguments are moto_server's,
-H HOST -p PORT):

* Listing times carry milliseconds (moto zeroes them): the S3 backend orders the versions and
  delete markers of one key by them, since the SDK returns the two in separate lists.
* ListObjectVersions follows S3's markers: a key marker alone skips every version of that key,
  a version-id marker that is not a version of the key marker is InvalidArgument,
  a marker that is a common prefix skips everything under it, a page holds at most max-keys
  entries, and the versions of a key come newest first by the order they were made.
* ListObjectsV2 with start-after inside a common prefix still returns that prefix when keys
  after start-after roll up into it.
* A common prefix is listed only when a live key rolls up into it (moto also lists one whose
  keys are all deleted: their delete markers are current).

* UploadPart, UploadPartCopy, ListParts and AbortMultipartUpload answer NoSuchUpload unless
  the upload exists for that key (moto: 500 for an unknown id, and any key goes).
* ListMultipartUploads gives each upload its initiation time (moto: a fixed date in 2010).

And one setting: no minimum part size (moto's S3_UPLOAD_PART_MIN_SIZE), so that the
multipart cases of the suite, written with parts of a few bytes, run here too (the test
fixture tells the backend, S3Config::min_part_size); the 5 MiB minimum is S3's and Garage's.
"""

import copy
import os

os.environ.setdefault("S3_UPLOAD_PART_MIN_SIZE", "0")
os.environ.setdefault("MOTO_S3_DEFAULT_KEY_BUFFER_SIZE", str(16 << 20))

import moto.core.serialize  # noqa: E402 (after the settings above)
import moto.core.utils
import moto.s3.models
from moto.s3.exceptions import InvalidArgumentError, NoSuchUpload
from moto.s3.models import FakeDeleteMarker, FakeKey, FakeMultipart, S3Backend
from moto.s3.responses import S3Response
from moto.server import main


def _with_millis(value):
    return moto.core.utils.iso_8601_datetime_with_milliseconds(value) if value else None


moto.s3.models.iso_8601_datetime_without_milliseconds_s3 = _with_millis
moto.core.serialize.TimestampSerializer.ISO8601_MICRO_ZEROED = "%Y-%m-%dT%H:%M:%S.%fZ"


def _roll_up(prefix, delimiter, name):
    if not delimiter:
        return None
    rest = name[len(prefix):]
    i = rest.find(delimiter)
    return None if i < 0 else name[: len(prefix) + i + len(delimiter)]


def list_object_versions(
    self,
    bucket_name,
    delimiter=None,
    key_marker=None,
    max_keys=1000,
    prefix="",
    version_id_marker=None,
):
    bucket = self.get_bucket(bucket_name)
    prefix = prefix or ""
    max_keys = 1000 if max_keys is None else int(max_keys)
    marker_is_prefix = (
        key_marker is not None and _roll_up(prefix, delimiter, key_marker) == key_marker
    )
    if version_id_marker:
        known = [str(v.version_id) for v in bucket.keys.getlist(key_marker or "", default=[])]
        if version_id_marker not in known:
            raise InvalidArgumentError(
                "Invalid version id specified", "version-id-marker", version_id_marker
            )
    entries = []  # (name, version or None for a common prefix)
    for name, versions in sorted(bucket.keys.iterlists(), key=lambda kv: kv[0]):
        if not name.startswith(prefix):
            continue
        newest_first = list(reversed(versions))
        for i, v in enumerate(newest_first):
            if key_marker is not None:
                if marker_is_prefix:
                    if name <= key_marker or name.startswith(key_marker):
                        continue
                elif name < key_marker:
                    continue
                elif name == key_marker:
                    if not version_id_marker:
                        continue
                    ids = [str(x.version_id) for x in newest_first]
                    if version_id_marker not in ids or i <= ids.index(version_id_marker):
                        continue
            common = _roll_up(prefix, delimiter, name)
            if common is not None:
                if not entries or entries[-1][0] != common:
                    entries.append((common, None))
                continue
            v = copy.deepcopy(v)
            v.is_latest = i == 0
            entries.append((name, v))
    page = entries[:max_keys]
    truncated = len(entries) > max_keys
    versions = [v for _, v in page if isinstance(v, FakeKey)]
    markers = [v for _, v in page if v is not None and not isinstance(v, FakeKey)]
    prefixes = [n for n, v in page if v is None]
    next_key, next_version = None, None
    if truncated and page:
        next_key = page[-1][0]
        if page[-1][1] is not None:
            next_version = page[-1][1].version_id
    return versions, prefixes, markers, next_key, next_version


S3Backend.list_object_versions = list_object_versions

_list_objects = S3Backend.list_objects


def list_objects(self, bucket, prefix, delimiter, marker, max_keys):
    keys, folders, truncated, next_marker = _list_objects(
        self, bucket, prefix, delimiter, marker, max_keys
    )
    if folders:
        live = [
            name
            for name, key in bucket.keys.items()
            if not isinstance(key, FakeDeleteMarker)
        ]
        folders = [f for f in folders if any(n.startswith(f) for n in live)]
    return keys, folders, truncated, next_marker


S3Backend.list_objects = list_objects

_list_objects_v2 = S3Backend.list_objects_v2


def list_objects_v2(self, bucket, prefix, delimiter, continuation_token, start_after, max_keys):
    if continuation_token or not start_after or not delimiter:
        return _list_objects_v2(
            self, bucket, prefix, delimiter, continuation_token, start_after, max_keys
        )
    keys, folders, _, _ = self.list_objects(bucket, prefix, delimiter, marker=None, max_keys=None)
    kept = []
    for entry in sorted(keys + folders, key=self._get_name):
        name = self._get_name(entry)
        if name > start_after:
            kept.append(entry)
        elif isinstance(entry, str) and start_after.startswith(entry):
            under, _, _, _ = self.list_objects(bucket, entry, None, marker=None, max_keys=None)
            if any(k.name > start_after for k in under):
                kept.append(entry)
    return self._truncate_result(kept, max_keys)


S3Backend.list_objects_v2 = list_objects_v2

def _upload_of_key(method):
    """S3Response.<method> answering NoSuchUpload unless the upload exists for this key."""
    original = getattr(S3Response, method)

    def checked(self):
        upload_id = self._get_param("uploadId")
        upload = self.backend.get_bucket(self.bucket_name).multiparts.get(upload_id)
        if upload is None or upload.key_name != self.parse_key_name():
            raise NoSuchUpload(upload_id)
        return original(self)

    setattr(S3Response, method, checked)


for _method in ("upload_part", "upload_part_copy", "list_parts", "abort_multipart_upload"):
    _upload_of_key(_method)

_multipart_init = FakeMultipart.__init__


def multipart_init(self, *args, **kwargs):
    _multipart_init(self, *args, **kwargs)
    self.objfs_initiated = moto.core.utils.utcnow()


FakeMultipart.__init__ = multipart_init
_list_multipart_uploads = S3Response.list_multipart_uploads


def list_multipart_uploads(self):
    uploads = {u.id: u for u in self.backend.list_multipart_uploads(self.bucket_name).values()}
    status, headers, body = _list_multipart_uploads(self)
    if isinstance(headers, dict):
        for name in [h for h in headers if h.lower() == "content-length"]:
            del headers[name]
    text = body.decode() if isinstance(body, bytes) else body
    for upload_id, upload in uploads.items():
        when = getattr(upload, "objfs_initiated", None)
        if when is None:
            continue
        stamp = moto.core.utils.iso_8601_datetime_with_milliseconds(when)
        mark = f"<UploadId>{upload_id}</UploadId>"
        at = text.find(mark)
        start = text.find("<Initiated>", at)
        end = text.find("</Initiated>", start)
        if at >= 0 and start >= 0 and end >= 0 and text.rfind("<Upload>", 0, start) < at:
            text = text[: start + len("<Initiated>")] + stamp + text[end:]
    return status, headers, text


S3Response.list_multipart_uploads = list_multipart_uploads

if __name__ == "__main__":
    main()
