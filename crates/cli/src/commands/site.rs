//! `pushctl site`: show a site, and set or remove the APNs and FCM credentials its iOS and
//! Android subscribers are reached with.
//!
//! Credentials are checked the way the senders will use them (the `.p8` key parsed as a
//! P-256 key, the service account's RSA key parsed) before anything is written, so a wrong
//! file is refused here rather than failing every delivery later. Senders cache a site's
//! credentials for `SENDER_SITE_CACHE_SECS` (300 s by default); a change reaches them within
//! that time.

use pushservice_apns::CredentialFileError;
use pushservice_fcm::ServiceAccount;
use pushservice_model::{ApnsCredentials, FcmCredentials, ObjectId, Site, parse_object_id};
use pushservice_store::Store;

use crate::cli::{SiteAction, SiteArgs};
use crate::error::CommandError;

/// Runs `pushctl site`.
pub async fn run(args: SiteArgs) -> Result<(), CommandError> {
    // Read and check the files before connecting: a wrong file is the common mistake.
    let change = Change::from_action(&args.action)?;
    let store = Store::connect(&args.mongo.settings()?).await?;
    let result = apply(&store, change).await;
    store.close().await;
    result
}

/// What the command does, with its inputs read and checked.
enum Change {
    Show(ObjectId),
    Apns(ObjectId, Option<ApnsCredentials>),
    Fcm(ObjectId, Option<FcmCredentials>),
}

impl Change {
    fn from_action(action: &SiteAction) -> Result<Change, CommandError> {
        Ok(match action {
            SiteAction::Show { site_id } => Change::Show(parse_object_id("site", site_id)?),
            SiteAction::Apns {
                site_id,
                key_file,
                key_id,
                team_id,
                topic,
                sandbox,
                remove,
            } => {
                let site_id = parse_object_id("site", site_id)?;
                let credentials = match (remove, key_file) {
                    (true, _) | (false, None) => None,
                    (false, Some(path)) => Some(
                        pushservice_apns::credentials_from_file(
                            path,
                            key_id.as_deref(),
                            team_id.as_deref().unwrap_or_default(),
                            topic.as_deref().unwrap_or_default(),
                            *sandbox,
                        )
                        .map_err(|e| match e {
                            CredentialFileError::NoKeyId(_) => {
                                CommandError::InvalidInput(format!("{e}: give it with --key-id"))
                            }
                            other => CommandError::InvalidInput(other.to_string()),
                        })?,
                    ),
                };
                Change::Apns(site_id, credentials)
            }
            SiteAction::Fcm {
                site_id,
                service_account,
                remove,
            } => {
                let site_id = parse_object_id("site", site_id)?;
                let credentials = match (remove, service_account) {
                    (true, _) | (false, None) => None,
                    (false, Some(path)) => Some(
                        pushservice_fcm::credentials_from_file(path)
                            .map_err(CommandError::InvalidInput)?,
                    ),
                };
                Change::Fcm(site_id, credentials)
            }
        })
    }
}

async fn apply(store: &Store, change: Change) -> Result<(), CommandError> {
    let not_found = |id: ObjectId| CommandError::NotFound(format!("site {id} does not exist"));
    let site_id = match change {
        Change::Show(id) => id,
        Change::Apns(id, credentials) => {
            if !store.set_site_apns(id, credentials.as_ref()).await? {
                return Err(not_found(id));
            }
            eprintln!(
                "site {id}: APNs credentials {}; senders pick the change up within SENDER_SITE_CACHE_SECS",
                if credentials.is_some() {
                    "set"
                } else {
                    "removed"
                }
            );
            id
        }
        Change::Fcm(id, credentials) => {
            if !store.set_site_fcm(id, credentials.as_ref()).await? {
                return Err(not_found(id));
            }
            eprintln!(
                "site {id}: FCM credentials {}; senders pick the change up within SENDER_SITE_CACHE_SECS",
                if credentials.is_some() {
                    "set"
                } else {
                    "removed"
                }
            );
            id
        }
    };
    let site = store
        .site(site_id)
        .await?
        .ok_or_else(|| not_found(site_id))?;
    println!("{:#}", public_view(&site));
    Ok(())
}

/// The site as JSON without anything secret: ids, subject, the VAPID public key, and what
/// identifies its APNs key and FCM service account.
fn public_view(site: &Site) -> serde_json::Value {
    let fcm = site.fcm.as_ref().map(
        |fcm| match ServiceAccount::from_json(&fcm.service_account) {
            Ok(account) => serde_json::json!({
                "projectId": account.project_id,
                "clientEmail": account.client_email,
                "tokenUri": account.token_uri,
            }),
            Err(e) => serde_json::json!({ "unusable": e.to_string() }),
        },
    );
    serde_json::json!({
        "siteId": site.id.to_hex(),
        "subject": site.subject,
        "publicKey": site.public_key,
        "apns": site.apns.as_ref().map(|apns| serde_json::json!({
            "teamId": apns.team_id,
            "keyId": apns.key_id,
            "topic": apns.topic,
            "sandbox": apns.sandbox,
        })),
        "fcm": fcm,
    })
}
