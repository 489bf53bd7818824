//! The JSON body extractor: errors name the field at fault.
//!
//! axum's `Json` answers a type mismatch with 422 and a message from serde that often omits
//! which field it was (`invalid type: string, expected u32`). This one answers 400 with the
//! path (`options.actions[1].title`) from `serde_path_to_error`, 415 without a JSON content
//! type, and leaves 413 to the body limit.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON request body, read (415 without a JSON content type, 413 over the limit) but not
/// parsed yet: handlers authenticate first and then [`JsonBody::parse`] it, so a caller
/// without credentials hears 401 whatever it sent.
#[derive(Debug)]
pub struct JsonBody(Bytes);

impl JsonBody {
    /// Parses the body as `T`, naming the field at fault.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        parse(&self.0)
    }
}

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .eq_ignore_ascii_case("application/json")
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                let status = rejection.status();
                if status == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        status,
                        "body_too_large",
                        "the request body is larger than API_BODY_LIMIT_BYTES allows",
                    )
                } else {
                    ApiError::new(status, "bad_body", rejection.body_text())
                }
            })?;
        Ok(JsonBody(bytes))
    }
}

/// Query parameters of type `T`; a bad one is a JSON 400 naming it, like body fields.
#[derive(Debug)]
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> axum::extract::FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|q| QueryParams(q.0))
            .map_err(|rejection| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_query",
                    rejection.body_text(),
                )
            })
    }
}

/// Parses `bytes` as `T`, naming the field at fault.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed_json",
                format!("the body is not valid JSON: {inner}"),
            )
        } else if path == "." {
            ApiError::invalid("body", inner.to_string())
        } else {
            ApiError::invalid(path, inner.to_string())
        }
    })?;
    deserializer.end().map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("the body has data after its JSON value: {e}"),
        )
    })?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        name: String,
        inner: Vec<Inner>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        count: u32,
    }

    #[test]
    fn names_the_path() {
        let err = parse::<Outer>(br#"{"name":"a","inner":[{"count":1},{"count":"x"}]}"#)
            .expect_err("bad type");
        assert_eq!(err.field.as_deref(), Some("inner[1].count"));
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        let err = parse::<Outer>(br#"{"name":"a","inner":[],"extra":1}"#).expect_err("unknown");
        assert!(
            err.message.contains("unknown field `extra`"),
            "{}",
            err.message
        );
        let err = parse::<Outer>(b"{not json").expect_err("syntax");
        assert_eq!(err.code, "malformed_json");
    }
}
