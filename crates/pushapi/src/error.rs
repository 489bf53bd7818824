//! API errors: `{"error": {"code": "...", "message": "...", "field": "..."}}` with a status
//! that says whose fault it is.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use pushservice_control::ControlError;
use pushservice_store::StoreError;

/// An error answered to the client.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Machine-readable code (`invalid_field`, `not_found` ...).
    pub code: &'static str,
    /// What is wrong and what to do, for people.
    pub message: String,
    /// The request field at fault, when there is one.
    pub field: Option<String>,
}

impl ApiError {
    /// An error with no field.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }

    /// 400 naming `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        let field = field.into();
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "invalid_field",
            message: format!("{field}: {}", message.into()),
            field: Some(field),
        }
    }

    /// 422 naming `field`: well-formed but unusable.
    pub fn unusable(
        field: impl Into<String>,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        let field = field.into();
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code,
            message: format!("{field}: {}", message.into()),
            field: Some(field),
        }
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 404 for a site that does not exist.
    pub fn no_site(id: impl std::fmt::Display) -> Self {
        ApiError::not_found(format!("site {id} does not exist"))
    }

    /// 401.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 409.
    pub fn conflict(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::CONFLICT, "conflict", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = serde_json::json!({ "code": self.code, "message": self.message });
        if let Some(field) = self.field {
            error["field"] = serde_json::Value::String(field);
        }
        let mut response =
            (self.status, Json(serde_json::json!({ "error": error }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::warn!(error = %e, "MongoDB request failed");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            format!("MongoDB failed, nothing was changed unless said otherwise; try again: {e}"),
        )
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::Invalid { field, message } => ApiError::invalid(field, message),
            ControlError::Unusable { field, message } => {
                ApiError::unusable(field, "unusable_field", message)
            }
            ControlError::NotFound(message) => ApiError::not_found(message),
            ControlError::Conflict(message) => ApiError::conflict(message),
            e @ ControlError::NotPending { .. } => {
                ApiError::conflict(format!("{e}; add ?force=true to send it again"))
            }
            ControlError::Store(e) => e.into(),
            ControlError::Kafka(e) => {
                tracing::warn!(error = %e, "Kafka request failed");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "kafka_unavailable",
                    format!("Kafka failed; try again: {e}"),
                )
            }
            ControlError::Other(e) => {
                tracing::error!(error = format!("{e:#}"), "internal error");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    format!("{e:#}"),
                )
            }
        }
    }
}

/// Result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;
