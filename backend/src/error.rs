//! The one error type of the HTTP layer.
//!
//! A handler returns [`AppError`]; its `IntoResponse` stores both messages in a response
//! extension, and the `localize_errors` middleware (see `http::mod`) renders the single
//! JSON shape `{"error":{"code","message"}}` in the caller's language. Internal details
//! are logged once, here, and never sent to the client.

use std::borrow::Cow;

use axum::{
    extract::rejection::PathRejection,
    http::StatusCode,
    response::{IntoResponse, Response},
};

use crate::{live::LiveError, store::StoreError};

/// An error answer: HTTP status, stable code, and a message in Vietnamese and English.
#[derive(Debug, Clone)]
pub struct AppError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// Vietnamese message (the default).
    pub vi: Cow<'static, str>,
    /// English message.
    pub en: Cow<'static, str>,
    /// Machine-readable facts, rendered as `error.details`.
    pub details: Option<serde_json::Value>,
}

/// The payload the localisation middleware turns into the JSON body.
#[derive(Debug, Clone)]
pub struct ErrorPayload(pub AppError);

impl AppError {
    /// An error with the given status, code and messages.
    pub fn new(
        status: StatusCode,
        code: &'static str,
        vi: impl Into<Cow<'static, str>>,
        en: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self { status, code, vi: vi.into(), en: en.into(), details: None }
    }

    /// The same error with machine-readable details.
    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }

    /// 400 with a code of the caller's input.
    pub fn bad_request(code: &'static str, vi: impl Into<Cow<'static, str>>, en: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, vi, en)
    }

    /// 422: well-formed but not acceptable.
    pub fn unprocessable(
        code: &'static str,
        vi: impl Into<Cow<'static, str>>,
        en: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, vi, en)
    }

    /// 404.
    pub fn not_found(code: &'static str, vi: impl Into<Cow<'static, str>>, en: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, vi, en)
    }

    /// 409.
    pub fn conflict(code: &'static str, vi: impl Into<Cow<'static, str>>, en: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::CONFLICT, code, vi, en)
    }

    /// 402: the money is not there (a wallet, a card).
    pub fn payment_required(
        code: &'static str,
        vi: impl Into<Cow<'static, str>>,
        en: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self::new(StatusCode::PAYMENT_REQUIRED, code, vi, en)
    }

    /// 429: over a rate limit.
    pub fn too_many_requests(
        code: &'static str,
        vi: impl Into<Cow<'static, str>>,
        en: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, code, vi, en)
    }

    /// 401 with its own code (e.g. wrong credentials at a login).
    pub fn unauthorized_as(
        code: &'static str,
        vi: impl Into<Cow<'static, str>>,
        en: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, vi, en)
    }

    /// 401: no valid credentials.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Thiếu hoặc sai mã truy cập (Authorization: Bearer …).",
            "Missing or invalid access token (Authorization: Bearer …).",
        )
    }

    /// 403: authenticated, but the role or scope does not allow it.
    pub fn forbidden(vi: impl Into<Cow<'static, str>>, en: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", vi, en)
    }

    /// 403 with its own code (e.g. a district outside the caller's scope).
    pub fn forbidden_as(
        code: &'static str,
        vi: impl Into<Cow<'static, str>>,
        en: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, vi, en)
    }

    /// 413: a body or a part of it is too large.
    pub fn payload_too_large(
        code: &'static str,
        vi: impl Into<Cow<'static, str>>,
        en: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, code, vi, en)
    }

    /// 415: content of a kind we do not take.
    pub fn unsupported_media_type(
        code: &'static str,
        vi: impl Into<Cow<'static, str>>,
        en: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, code, vi, en)
    }

    /// 503: a dependency is down; the client may retry.
    pub fn unavailable(what: &'static str) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            format!("Dịch vụ tạm thời không sẵn sàng ({what}). Vui lòng thử lại."),
            format!("The service is temporarily unavailable ({what}). Please retry."),
        )
    }

    /// 500: logs the cause once; the client sees only a generic message.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "Lỗi hệ thống. Vui lòng thử lại sau.",
            "Internal error. Please try again later.",
        )
    }

    /// The message in the language chosen (`en` or anything else for Vietnamese).
    pub fn message(&self, english: bool) -> &str {
        if english { &self.en } else { &self.vi }
    }
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.en)
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status;
        let mut resp = status.into_response();
        resp.extensions_mut().insert(ErrorPayload(self));
        resp
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(cause) => {
                crate::warn_throttled!(error = %cause, "database unavailable");
                AppError::unavailable("database")
            }
            StoreError::Conflict(constraint) => conflict_for(&constraint),
            StoreError::Internal(cause) => AppError::internal(&cause),
        }
    }
}

impl From<LiveError> for AppError {
    fn from(e: LiveError) -> Self {
        crate::warn_throttled!(error = %e, "live state unavailable");
        AppError::unavailable("live state")
    }
}

/// Maps a unique-constraint name to a 409 the user can act on.
fn conflict_for(constraint: &str) -> AppError {
    match constraint {
        "points_code_key" => AppError::conflict(
            "point_code_taken",
            "Mã điểm đỗ đã tồn tại.",
            "A parking point with this code already exists.",
        ),
        "districts_code_key" => AppError::conflict(
            "district_code_taken",
            "Mã quận đã tồn tại.",
            "A district with this code already exists.",
        ),
        "streets_district_name_key" => AppError::conflict(
            "street_exists",
            "Tuyến phố này đã có trong quận.",
            "This street already exists in the district.",
        ),
        "sessions_active_plate_key" => AppError::conflict(
            "plate_active",
            "Xe này đang có lượt đỗ khác.",
            "This vehicle already has an active parking session.",
        ),
        "idempotency_keys_pkey" => AppError::conflict(
            "idempotency_in_progress",
            "Yêu cầu trước với cùng khóa đang được xử lý. Thử lại sau giây lát.",
            "A request with the same key is still being processed. Retry shortly.",
        ),
        "period_closed" => AppError::conflict(
            "period_closed",
            "Kỳ kế toán này đã khóa sổ: không thể ghi thêm vào đó.",
            "This accounting period is closed: nothing can be posted into it.",
        ),
        "refund_requests_pending_session_key" => AppError::conflict(
            "request_pending",
            "Lượt đỗ này đã có một yêu cầu hoàn tiền đang chờ duyệt.",
            "This session already has a refund request waiting for approval.",
        ),
        "warden_shifts_open_key" => {
            AppError::conflict("shift_open", "Bạn đang có một ca chưa đóng.", "You already have an open shift.")
        }
        other => AppError::conflict(
            "conflict",
            format!("Xung đột dữ liệu ({other})."),
            format!("Conflicting data ({other})."),
        ),
    }
}

impl From<PathRejection> for AppError {
    fn from(r: PathRejection) -> Self {
        use axum::extract::path::ErrorKind;
        let key = match &r {
            PathRejection::FailedToDeserializePathParams(e) => match e.kind() {
                ErrorKind::ParseErrorAtKey { key, .. }
                | ErrorKind::InvalidUtf8InPathParam { key }
                | ErrorKind::DeserializeError { key, .. } => Some(key.clone()),
                _ => None,
            },
            _ => None,
        };
        match key {
            Some(key) => AppError::bad_request(
                "invalid_path",
                format!("Đường dẫn không hợp lệ: phần `{key}` sai định dạng."),
                format!("Invalid path: `{key}` is malformed."),
            )
            .with_details(serde_json::json!({ "field": key })),
            None => AppError::bad_request("invalid_path", "Đường dẫn không hợp lệ.", "Invalid path."),
        }
    }
}

/// Fallback payload for statuses raised by middleware (body limit, timeout, unknown route).
pub fn error_for_status(status: StatusCode) -> AppError {
    match status {
        StatusCode::NOT_FOUND => AppError::not_found("route_not_found", "Không có đường dẫn này.", "No such route."),
        StatusCode::METHOD_NOT_ALLOWED => AppError::new(
            status,
            "method_not_allowed",
            "Phương thức không được hỗ trợ cho đường dẫn này.",
            "Method not allowed for this route.",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => {
            AppError::new(status, "payload_too_large", "Nội dung yêu cầu quá lớn.", "The request body is too large.")
        }
        StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => AppError::new(
            status,
            "timeout",
            "Yêu cầu xử lý quá lâu. Vui lòng thử lại.",
            "The request took too long. Please retry.",
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => AppError::new(
            status,
            "unsupported_media_type",
            "Kiểu nội dung không được hỗ trợ.",
            "Unsupported content type.",
        ),
        s if s.is_server_error() => AppError::new(
            s,
            "internal_error",
            "Lỗi hệ thống. Vui lòng thử lại sau.",
            "Internal error. Please try again later.",
        ),
        s => AppError::new(s, "bad_request", "Yêu cầu không hợp lệ.", "Bad request."),
    }
}

/// A domain rule broken by the caller's input: 400 with the rule's code and words.
impl From<crate::domain::city::Invalid> for AppError {
    fn from(e: crate::domain::city::Invalid) -> Self {
        AppError::bad_request(e.code, e.vi, e.en)
    }
}

/// A pricing refusal: a stay of no time (400), too long or a budget under one turn (422).
impl From<crate::domain::tariff::QuoteError> for AppError {
    fn from(e: crate::domain::tariff::QuoteError) -> Self {
        use crate::domain::tariff::QuoteError;
        match e {
            QuoteError::ZeroDuration => AppError::bad_request(
                "invalid_duration",
                "Thời gian đỗ phải lớn hơn 0 phút.",
                "The stay must be longer than 0 minutes.",
            ),
            QuoteError::TooLong { max_minutes } => AppError::unprocessable(
                "stay_too_long",
                format!("Thời gian đỗ tối đa tại đây là {max_minutes} phút ({} giờ).", max_minutes / 60),
                format!("The longest stay here is {max_minutes} minutes ({} hours).", max_minutes / 60),
            ),
            QuoteError::BudgetTooSmall { first_turn } => AppError::unprocessable(
                "amount_too_small",
                format!("Số tiền không đủ cho một lượt ({}).", first_turn.display(false)),
                format!("The amount does not buy one turn ({}).", first_turn.display(true)),
            ),
            QuoteError::Uncovered => AppError::internal(&"a validated tariff left an instant uncovered"),
        }
    }
}
