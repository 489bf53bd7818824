//! A site's APNs credentials from the file a user holds: the `.p8` key Apple issued, read and
//! parsed exactly as the sender will use it before anything is stored, so a wrong file is
//! refused where it is given (`pushctl site apns`, `seed site`) rather than failing every
//! delivery later.

use std::path::Path;

use pushservice_model::ApnsCredentials;

use crate::token::{ApnsKey, KeyError};

/// Why a key file cannot become a site's APNs credentials.
#[derive(Debug, thiserror::Error)]
pub enum CredentialFileError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// No key id was given and the file is not named `AuthKey_<KEYID>.p8`.
    #[error("{0} is not named AuthKey_<KEYID>.p8, so the key id must be given")]
    NoKeyId(String),
    /// The bundle id is empty.
    #[error("the APNs topic is empty; give the iOS app's bundle id")]
    EmptyTopic,
    /// The file is not a usable key, or an id is malformed.
    #[error("{path}: {source}")]
    Key {
        /// The file.
        path: String,
        /// What is wrong.
        source: KeyError,
    },
}

/// Why a key's text cannot become a site's APNs credentials.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The bundle id is empty.
    #[error("the APNs topic is empty; give the iOS app's bundle id")]
    EmptyTopic,
    /// The key is not usable, or an id is malformed.
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// The credentials for the `.p8` key text `private_key` (key id `key_id`) of team `team_id`,
/// sending to the app `topic`, parsed exactly as the sender will use it: what `pushctl site
/// apns` and the API's `PUT /v1/sites/{siteId}/apns` both check.
pub fn credentials(
    team_id: &str,
    key_id: &str,
    private_key: &str,
    topic: &str,
    sandbox: bool,
) -> Result<ApnsCredentials, CredentialError> {
    let topic = topic.trim();
    if topic.is_empty() {
        return Err(CredentialError::EmptyTopic);
    }
    ApnsKey::from_p8(team_id, key_id, private_key)?;
    Ok(ApnsCredentials {
        team_id: team_id.to_owned(),
        key_id: key_id.to_owned(),
        private_key: private_key.to_owned(),
        topic: topic.to_owned(),
        sandbox,
    })
}

/// The credentials for signing key `path` (`AuthKey_<KEYID>.p8`; `key_id` overrides the id in
/// the name) of team `team_id`, sending to the app `topic`.
pub fn credentials_from_file(
    path: &Path,
    key_id: Option<&str>,
    team_id: &str,
    topic: &str,
    sandbox: bool,
) -> Result<ApnsCredentials, CredentialFileError> {
    let shown = || path.display().to_string();
    let key_id = key_id
        .or_else(|| crate::key_id_from_file_name(path))
        .ok_or_else(|| CredentialFileError::NoKeyId(shown()))?
        .to_owned();
    if topic.trim().is_empty() {
        return Err(CredentialFileError::EmptyTopic);
    }
    let private_key =
        std::fs::read_to_string(path).map_err(|source| CredentialFileError::Read {
            path: shown(),
            source,
        })?;
    credentials(team_id, &key_id, &private_key, topic, sandbox).map_err(|e| match e {
        CredentialError::EmptyTopic => CredentialFileError::EmptyTopic,
        CredentialError::Key(source) => CredentialFileError::Key {
            path: shown(),
            source,
        },
    })
}
