//! Bucket administration that opening never does by itself: creating (and deleting) a bucket
//! and turning its versioning on or off (for `objfs init`/`--enable-versioning` style commands and the
//! test fixtures). Each call builds its own client from the same [`S3Config`].

use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};

use super::errors::{Ctx, Failure};
use super::{client, S3Config};
use crate::error::Result;

/// Creates the bucket of `cfg`; a bucket that already exists and is ours is fine.
pub async fn create_bucket(cfg: &S3Config) -> Result<()> {
    let c = client::build(cfg).await;
    match c.create_bucket().bucket(&cfg.bucket).send().await {
        Ok(_) => Ok(()),
        Err(e) => {
            let f = Failure::of(&e);
            if f.code.as_deref() == Some("BucketAlreadyOwnedByYou") {
                return Ok(());
            }
            let location = cfg.location();
            Err(f.into_error(Ctx::new("CreateBucket", "", &location)))
        }
    }
}

/// Turns versioning of the bucket of `cfg` on (`Enabled`) or off (`Suspended`: versions made
/// so far stay).
pub async fn set_versioning(cfg: &S3Config, enabled: bool) -> Result<()> {
    let c = client::build(cfg).await;
    let status = if enabled {
        BucketVersioningStatus::Enabled
    } else {
        BucketVersioningStatus::Suspended
    };
    c.put_bucket_versioning()
        .bucket(&cfg.bucket)
        .versioning_configuration(VersioningConfiguration::builder().status(status).build())
        .send()
        .await
        .map_err(|e| {
            let location = cfg.location();
            Failure::of(&e).into_error(Ctx::new("PutBucketVersioning", "", &location))
        })?;
    Ok(())
}

/// Deletes the bucket of `cfg`, which must be empty (S3 refuses otherwise: `BucketNotEmpty`).
/// objfs never calls it on its own; tests use it to make a bucket disappear under a mount.
pub async fn delete_bucket(cfg: &S3Config) -> Result<()> {
    let c = client::build(cfg).await;
    c.delete_bucket()
        .bucket(&cfg.bucket)
        .send()
        .await
        .map_err(|e| {
            let location = cfg.location();
            Failure::of(&e).into_error(Ctx::new("DeleteBucket", "", &location))
        })?;
    Ok(())
}
