//! Error responses exactly as Airtable sends them.
//!
//! Two body shapes exist on the wire: `{"error":{"type":"…","message":"…"}}` (message optional)
//! and the bare `{"error":"NOT_FOUND"}` for unknown routes. Every handler returns
//! [`ApiError`] for failures, so status, type and message stay together.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// One error response: status plus body.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) body: Value,
}

impl ApiError {
    /// `{"error":{"type":…,"message":…}}`.
    pub(crate) fn typed(
        status: StatusCode,
        error_type: &str,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            body: json!({"error": {"type": error_type, "message": message.into()}}),
        }
    }

    /// `{"error":{"type":…}}`, without a message.
    pub(crate) fn type_only(status: StatusCode, error_type: &str) -> ApiError {
        ApiError {
            status,
            body: json!({"error": {"type": error_type}}),
        }
    }

    /// 404 `{"error":"NOT_FOUND"}`: a route that does not exist.
    pub(crate) fn route_not_found() -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            body: json!({"error": "NOT_FOUND"}),
        }
    }

    pub(crate) fn unauthorized() -> ApiError {
        ApiError::typed(
            StatusCode::UNAUTHORIZED,
            "AUTHENTICATION_REQUIRED",
            "Authentication required",
        )
    }

    /// 403 for a base (or other model) the token cannot see, which is also what a missing base
    /// gives on the data routes.
    pub(crate) fn model_not_found_or_forbidden() -> ApiError {
        ApiError::typed(
            StatusCode::FORBIDDEN,
            "INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND",
            "Invalid permissions, or the requested model was not found. Check that both your user and \
             your token have the required permissions, and that the model names and/or ids are correct.",
        )
    }

    /// 404 `{"error":{"type":"NOT_FOUND"}}`: a meta route on a base the token cannot reach.
    pub(crate) fn meta_not_found() -> ApiError {
        ApiError::type_only(StatusCode::NOT_FOUND, "NOT_FOUND")
    }

    pub(crate) fn table_not_found(table: &str) -> ApiError {
        ApiError::typed(
            StatusCode::NOT_FOUND,
            "MODEL_ID_NOT_FOUND",
            format!("Table not found: {table}"),
        )
    }

    pub(crate) fn record_not_found() -> ApiError {
        ApiError::typed(
            StatusCode::NOT_FOUND,
            "MODEL_ID_NOT_FOUND",
            "Record not found",
        )
    }

    pub(crate) fn field_not_found(field: &str) -> ApiError {
        ApiError::typed(
            StatusCode::NOT_FOUND,
            "MODEL_ID_NOT_FOUND",
            format!("Field not found: {field}"),
        )
    }

    /// 422 with `type`.
    pub(crate) fn unprocessable(error_type: &str, message: impl Into<String>) -> ApiError {
        ApiError::typed(StatusCode::UNPROCESSABLE_ENTITY, error_type, message)
    }

    /// 422 `INVALID_REQUEST_UNKNOWN`, the catch-all for parameter validation.
    pub(crate) fn invalid_request(message: impl Into<String>) -> ApiError {
        let message = message.into();
        ApiError::unprocessable(
            "INVALID_REQUEST_UNKNOWN",
            format!(
                "Invalid request: parameter validation failed. Check your request data. ({message})"
            ),
        )
    }

    pub(crate) fn invalid_json() -> ApiError {
        ApiError::typed(
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST_BODY",
            "The request body could not be parsed as JSON",
        )
    }

    pub(crate) fn unknown_field_name(name: &str) -> ApiError {
        ApiError::unprocessable(
            "UNKNOWN_FIELD_NAME",
            format!("Unknown field name: \"{name}\""),
        )
    }

    pub(crate) fn computed_field(name: &str) -> ApiError {
        ApiError::unprocessable(
            "INVALID_VALUE_FOR_COLUMN",
            format!("Field \"{name}\" cannot accept a value because the field is computed"),
        )
    }

    pub(crate) fn invalid_value(name: &str, detail: impl std::fmt::Display) -> ApiError {
        ApiError::unprocessable(
            "INVALID_VALUE_FOR_COLUMN",
            format!("Field \"{name}\" cannot accept the provided value: {detail}"),
        )
    }

    pub(crate) fn iterator_not_available() -> ApiError {
        ApiError::type_only(
            StatusCode::UNPROCESSABLE_ENTITY,
            "LIST_RECORDS_ITERATOR_NOT_AVAILABLE",
        )
    }

    pub(crate) fn rate_limited() -> ApiError {
        ApiError::typed(
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMIT_REACHED",
            "Rate limit exceeded. Please try again later",
        )
    }

    pub(crate) fn billing_limited() -> ApiError {
        ApiError::typed(
            StatusCode::TOO_MANY_REQUESTS,
            "PUBLIC_API_BILLING_LIMIT_EXCEEDED",
            "The API call limit for this workspace's billing plan has been exceeded",
        )
    }

    pub(crate) fn retriable() -> ApiError {
        ApiError::typed(
            StatusCode::SERVICE_UNAVAILABLE,
            "RETRIABLE_ERROR",
            "Server encountered an error while processing your request, and it is safe to retry the request",
        )
    }

    pub(crate) fn bad_gateway() -> ApiError {
        ApiError::typed(
            StatusCode::BAD_GATEWAY,
            "SERVER_ERROR",
            "Airtable's servers are restarting or an unexpected outage is in progress",
        )
    }

    pub(crate) fn too_large(message: impl Into<String>) -> ApiError {
        ApiError::typed(
            StatusCode::PAYLOAD_TOO_LARGE,
            "REQUEST_ENTITY_TOO_LARGE",
            message,
        )
    }

    /// The `type` of a typed body, or the bare string, for tests and error conversion.
    pub(crate) fn error_type(&self) -> String {
        match &self.body["error"] {
            Value::String(bare) => bare.clone(),
            object => object["type"].as_str().unwrap_or_default().to_owned(),
        }
    }

    pub(crate) fn message(&self) -> String {
        self.body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body)).into_response()
    }
}
