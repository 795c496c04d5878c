//! Turns what the SDK returns after its retries into the crate's [`StoreError`] kinds, keeping
//! the S3 error code, the HTTP status and the request id in the message, so that a failure in
//! a log says which request failed and why.

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::RequestId;

use crate::error::StoreError;
use crate::types::VersionId;

/// The code of a request the SDK refused to build (bad input).
const NOT_SENT: &str = "RequestNotSent";

/// What a failed request was about, for the error it becomes.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    /// The operation, e.g. `"GetObject"`.
    pub op: &'static str,
    /// The key as the caller named it (without the store's prefix); empty for bucket requests.
    pub key: &'a str,
    /// The version the request named, if any.
    pub version: Option<&'a VersionId>,
    /// The multipart upload the request named, if any.
    pub upload_id: Option<&'a str>,
    /// `s3://bucket/prefix` at the endpoint, for errors about the bucket.
    pub location: &'a str,
}

impl<'a> Ctx<'a> {
    pub fn new(op: &'static str, key: &'a str, location: &'a str) -> Self {
        Ctx {
            op,
            key,
            version: None,
            upload_id: None,
            location,
        }
    }

    pub fn version(mut self, v: Option<&'a VersionId>) -> Self {
        self.version = v;
        self
    }

    pub fn upload(mut self, id: &'a str) -> Self {
        self.upload_id = Some(id);
        self
    }
}

/// The parts of an SDK error that decide its kind.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Failure {
    /// HTTP status, when a response came.
    pub status: Option<u16>,
    /// S3 error code (`NoSuchKey`, `SlowDown`, ...), when the response had one.
    pub code: Option<String>,
    pub message: Option<String>,
    pub request_id: Option<String>,
    /// No response: connection refused, DNS, TLS, timeout (with the SDK's description).
    pub transport: Option<String>,
}

impl Failure {
    /// Extracts the parts of an SDK error.
    pub fn of<E>(e: &SdkError<E, HttpResponse>) -> Failure
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let status = e.raw_response().map(|r| r.status().as_u16());
        let transport = match e {
            SdkError::DispatchFailure(d) => Some(match d.as_connector_error() {
                Some(c) => format!("cannot reach the endpoint: {}", chain(c)),
                None => "cannot reach the endpoint".to_string(),
            }),
            SdkError::TimeoutError(_) => Some("the request timed out".to_string()),

            SdkError::ResponseError(_) => {
                Some(format!("the response was unreadable: {}", chain(e)))
            }
            // A service error without an S3 code: say what the SDK saw.
            // (An error status without a body, as HEAD answers, says enough by its status.)
            _ if e.code().is_none() && status.is_none_or(|s| s < 300) => Some(chain(e)),
            _ => None,
        };
        if let SdkError::ConstructionFailure(_) = e {
            // Bad input the SDK refused to send: not the server's failure.
            return Failure {
                code: Some(NOT_SENT.to_string()),
                message: Some(format!("the request could not be built: {}", chain(e))),
                ..Default::default()
            };
        }
        Failure {
            status,
            code: e.code().map(str::to_string),
            message: e.message().map(str::to_string),
            request_id: e.request_id().map(str::to_string),
            transport,
        }
    }

    fn describe(&self) -> String {
        let mut s = String::new();
        if let Some(t) = &self.transport {
            s.push_str(t);
        }
        if let Some(c) = &self.code {
            if !s.is_empty() {
                s.push_str(": ");
            }
            s.push_str(c);
        }
        if let Some(m) = &self.message {
            s.push_str(": ");
            s.push_str(m);
        }
        if let Some(st) = self.status {
            s.push_str(&format!(" (HTTP {st}"));
            if let Some(id) = &self.request_id {
                s.push_str(&format!(", request {id}"));
            }
            s.push(')');
        }
        if s.is_empty() {
            s.push_str("unknown failure");
        }
        s
    }

    /// The store error this failure is, for a request described by `ctx`.
    pub fn into_error(self, ctx: Ctx<'_>) -> StoreError {
        let what = if ctx.key.is_empty() {
            format!("{} {}", ctx.op, ctx.location)
        } else {
            format!("{} {:?} in {}", ctx.op, ctx.key, ctx.location)
        };
        let reason = self.describe();
        let code = self.code.as_deref().unwrap_or("");
        let missing = || match ctx.version {
            Some(v) => StoreError::NoSuchVersion {
                key: ctx.key.to_string(),
                version: v.clone(),
            },
            None => StoreError::NotFound {
                key: ctx.key.to_string(),
            },
        };
        if self.transport.is_some() && self.status.is_none() {
            return StoreError::Unavailable { what, reason };
        }
        match (self.status.unwrap_or(0), code) {
            (_, NOT_SENT) => StoreError::InvalidArgument(format!("{what}: {reason}")),
            (_, "NoSuchBucket") => StoreError::NoSuchBucket(format!("{what}: {reason}")),
            (_, "NoSuchUpload") => StoreError::NoSuchUpload {
                upload_id: ctx.upload_id.unwrap_or_default().to_string(),
            },
            (_, "NoSuchVersion") => missing(),
            // A version id the server cannot parse names no version of ours.
            (400, "InvalidArgument") if ctx.version.is_some() => missing(),
            // A delete marker asked for by version (GET/HEAD answer 405).
            (405, _) if ctx.version.is_some() => missing(),
            (404, _) => missing(),
            (412, _) | (409, "ConditionalRequestConflict") => StoreError::PreconditionFailed {
                key: ctx.key.to_string(),
                reason,
            },
            (416, _) | (_, "InvalidRange") => {
                StoreError::InvalidArgument(format!("{what}: {reason}"))
            }
            (_, "InvalidPart" | "InvalidPartOrder" | "EntityTooSmall" | "EntityTooLarge") => {
                StoreError::InvalidPart(format!("{what}: {reason}"))
            }
            (401 | 403, _) => StoreError::PermissionDenied(format!("{what}: {reason}")),
            (429 | 503, _) | (_, "SlowDown" | "Throttling" | "ThrottlingException") => {
                StoreError::Throttled { what, reason }
            }
            // A request that timed out, or ran into another in progress, may pass next time.
            (408, _) | (_, "RequestTimeout" | "OperationAborted") => {
                StoreError::Unavailable { what, reason }
            }
            (500..=599, _) => StoreError::Unavailable { what, reason },
            (400..=499, _) => StoreError::InvalidArgument(format!("{what}: {reason}")),
            _ => StoreError::Backend {
                backend: "s3",
                source: format!("{what}: {reason}").into(),
            },
        }
    }
}

/// An error and its sources on one line.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// Maps an SDK error straight to a store error.
pub fn map<E>(ctx: Ctx<'_>, e: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let f = Failure::of(&e);
    let err = f.into_error(ctx);
    tracing::debug!(op = ctx.op, key = ctx.key, error = %err, "s3 request failed");
    err
}

/// The answer of a request, `None` when it failed with HTTP `status` (which the caller
/// handles), and any other failure as a store error.
pub fn unless_status<T, E>(
    ctx: Ctx<'_>,
    sent: Result<T, SdkError<E, HttpResponse>>,
    status: u16,
) -> Result<Option<T>, StoreError>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match sent {
        Ok(out) => Ok(Some(out)),
        Err(e) if e.raw_response().map(|r| r.status().as_u16()) == Some(status) => Ok(None),
        Err(e) => Err(map(ctx, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn f(status: u16, code: &str) -> Failure {
        Failure {
            status: Some(status),
            code: (!code.is_empty()).then(|| code.to_string()),
            message: Some("msg".into()),
            request_id: Some("RID".into()),
            transport: None,
        }
    }

    #[test]
    fn kinds() {
        let ctx = Ctx::new("GetObject", "k", "s3://b");
        let v: VersionId = "v1".parse().unwrap();
        let vctx = ctx.version(Some(&v));
        for (fail, c, kind) in [
            (f(404, "NoSuchKey"), ctx, ErrorKind::NotFound),
            (f(404, ""), vctx, ErrorKind::NoSuchVersion),
            (f(405, "MethodNotAllowed"), vctx, ErrorKind::NoSuchVersion),
            (f(400, "InvalidArgument"), vctx, ErrorKind::NoSuchVersion),
            (f(400, "InvalidArgument"), ctx, ErrorKind::InvalidArgument),
            (f(404, "NoSuchBucket"), ctx, ErrorKind::NoSuchBucket),
            (f(404, "NoSuchUpload"), ctx, ErrorKind::NoSuchUpload),
            (
                f(412, "PreconditionFailed"),
                ctx,
                ErrorKind::PreconditionFailed,
            ),
            (f(403, "AccessDenied"), ctx, ErrorKind::PermissionDenied),
            (f(503, "SlowDown"), ctx, ErrorKind::Throttled),
            (f(500, "InternalError"), ctx, ErrorKind::Unavailable),
            (f(400, "EntityTooSmall"), ctx, ErrorKind::InvalidPart),
            (f(429, "TooManyRequests"), ctx, ErrorKind::Throttled),
            (f(400, "RequestTimeout"), ctx, ErrorKind::Unavailable),
            (f(409, "OperationAborted"), ctx, ErrorKind::Unavailable),
        ] {
            let e = fail.clone().into_error(c);
            assert_eq!(e.kind(), kind, "{fail:?} -> {e}");
        }
        let e = f(500, "InternalError").into_error(ctx).to_string();
        assert!(
            e.contains("InternalError") && e.contains("RID") && e.contains("500"),
            "{e}"
        );
        let t = Failure {
            transport: Some("cannot reach the endpoint: connection refused".into()),
            ..Default::default()
        };
        assert_eq!(t.into_error(ctx).kind(), ErrorKind::Unavailable);
    }
}
