//! Sites: provisioning (fresh VAPID keys), the fields a site may change, and credentials
//! checked exactly as the senders will use them.

use aws_lc_rs::encoding::AsBigEndian as _;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use pushservice_model::{ApnsCredentials, FcmCredentials, Site};

use crate::error::ControlError;

/// Most allowed origins a site may list.
pub const MAX_ALLOWED_ORIGINS: usize = 50;

/// A new site for `subject` with a freshly generated VAPID key pair and no API key yet.
pub fn new_site(subject: &str, allowed_origins: &[String]) -> Result<Site, ControlError> {
    let subject = check_subject(subject)?;
    let origins = check_origins(allowed_origins)?;
    let (public_key, private_key) = generate_vapid_keys()?;
    let mut site = Site::new(subject, public_key, private_key);
    site.allowed_origins = origins;
    Ok(site)
}

/// A fresh VAPID key pair, base64url without padding as the `sites` collection stores it:
/// the 65-byte uncompressed public point and the 32-byte private scalar.
pub fn generate_vapid_keys() -> Result<(String, String), ControlError> {
    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
        .map_err(|_| anyhow::anyhow!("P-256 key generation failed"))?;
    let private = pair
        .private_key()
        .as_be_bytes()
        .map_err(|_| anyhow::anyhow!("P-256 private key export failed"))?;
    Ok((
        URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
        URL_SAFE_NO_PAD.encode(private.as_ref()),
    ))
}

/// Checks a VAPID subject: push services require a `mailto:` address or an `https:` URL
/// (RFC 8292 section 2.1) and some refuse anything else.
pub fn check_subject(subject: &str) -> Result<String, ControlError> {
    let subject = subject.trim();
    let bad = || {
        ControlError::invalid(
            "subject",
            format!(
                "{subject:?} is not a mailto: address or an https: URL where push services can \
                 reach the site's operator (for example mailto:ops@example.com)"
            ),
        )
    };
    if subject.len() > 512 {
        return Err(ControlError::invalid(
            "subject",
            "longer than 512 characters",
        ));
    }
    if let Some(address) = subject.strip_prefix("mailto:") {
        let (local, domain) = address.split_once('@').ok_or_else(bad)?;
        if local.is_empty() || domain.is_empty() || address.contains(char::is_whitespace) {
            return Err(bad());
        }
        return Ok(subject.to_owned());
    }
    match url::Url::parse(subject) {
        Ok(url) if url.scheme() == "https" && url.host().is_some() => Ok(subject.to_owned()),
        _ => Err(bad()),
    }
}

/// Checks and normalizes a site's allowed origins: each a bare origin (`https://shop.example`
/// or `http://localhost:8080`), no path, no duplicates.
pub fn check_origins(origins: &[String]) -> Result<Vec<String>, ControlError> {
    if origins.len() > MAX_ALLOWED_ORIGINS {
        return Err(ControlError::invalid(
            "allowedOrigins",
            format!("at most {MAX_ALLOWED_ORIGINS} origins"),
        ));
    }
    let mut normalized: Vec<String> = Vec::with_capacity(origins.len());
    for (i, origin) in origins.iter().enumerate() {
        let field = format!("allowedOrigins[{i}]");
        let url = url::Url::parse(origin.trim()).map_err(|e| {
            ControlError::invalid(&field, format!("{origin:?} is not an origin URL ({e})"))
        })?;
        if !matches!(url.scheme(), "https" | "http") || url.host().is_none() {
            return Err(ControlError::invalid(
                &field,
                format!("{origin:?} is not an http(s) origin such as https://shop.example"),
            ));
        }
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            return Err(ControlError::invalid(
                &field,
                format!(
                    "{origin:?} has a path, query or fragment; give only scheme, host and port"
                ),
            ));
        }
        // The ASCII serialization is what browsers send in the Origin header.
        let serialized = url.origin().ascii_serialization();
        if !normalized.contains(&serialized) {
            normalized.push(serialized);
        }
    }
    Ok(normalized)
}

/// APNs credentials from their parts, the `.p8` key parsed as the senders will use it.
pub fn apns_credentials(
    team_id: &str,
    key_id: &str,
    private_key: &str,
    topic: &str,
    sandbox: bool,
) -> Result<ApnsCredentials, ControlError> {
    use pushservice_apns::{CredentialError, KeyError};
    pushservice_apns::credentials(team_id, key_id, private_key, topic, sandbox).map_err(|e| match e
    {
        CredentialError::EmptyTopic => ControlError::invalid(
            "topic",
            "empty; give the iOS app's bundle id (sent as apns-topic)",
        ),
        CredentialError::Key(KeyError::BadId(what)) if what.contains("team") => {
            ControlError::invalid("teamId", e.to_string())
        }
        CredentialError::Key(KeyError::BadId(_)) => ControlError::invalid("keyId", e.to_string()),
        CredentialError::Key(_) => ControlError::unusable("privateKey", e.to_string()),
    })
}

/// FCM credentials from a service-account key file's JSON, parsed as the senders will use it.
pub fn fcm_credentials(service_account_json: &str) -> Result<FcmCredentials, ControlError> {
    pushservice_fcm::ServiceAccount::from_json(service_account_json)
        .map_err(|e| ControlError::unusable("serviceAccount", e.to_string()))?;
    Ok(FcmCredentials {
        service_account: service_account_json.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects() {
        assert!(check_subject("mailto:ops@example.com").is_ok());
        assert!(check_subject("https://shop.example/contact").is_ok());
        for bad in [
            "ops@example.com",
            "mailto:",
            "mailto:@x",
            "http://shop.example",
            "",
        ] {
            let err = check_subject(bad).expect_err(bad).to_string();
            assert!(err.starts_with("subject:"), "{err}");
        }
    }

    #[test]
    fn origins_are_normalized_and_checked() {
        let ok = check_origins(&[
            "https://Shop.Example".into(),
            "https://shop.example:443".into(),
            "http://localhost:8080".into(),
        ])
        .expect("valid");
        assert_eq!(ok, vec!["https://shop.example", "http://localhost:8080"]);
        let err = check_origins(&["https://a.example".into(), "https://b.example/page".into()])
            .expect_err("path")
            .to_string();
        assert!(err.starts_with("allowedOrigins[1]:"), "{err}");
        assert!(check_origins(&["ftp://a.example".into()]).is_err());
        assert!(check_origins(&["not a url".into()]).is_err());
    }

    #[test]
    fn new_site_has_usable_vapid_keys() {
        let site = new_site("mailto:ops@example.com", &[]).expect("site");
        let public = URL_SAFE_NO_PAD.decode(&site.public_key).expect("base64");
        assert_eq!(public.len(), 65);
        assert_eq!(public[0], 4);
        assert_eq!(
            URL_SAFE_NO_PAD
                .decode(&site.private_key)
                .expect("b64")
                .len(),
            32
        );
    }
}
