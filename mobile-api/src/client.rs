use reqwest::{Method, StatusCode};
use serde::{Serialize, de::DeserializeOwned};

use crate::{tariff::*, types::*, warden::*};

/// A typed async client for the iParking HTTP API.
///
/// ```no_run
/// # async fn demo() -> Result<(), iparking_mobile_api::ClientError> {
/// let api = iparking_mobile_api::Client::new("http://127.0.0.1:8080");
/// let near = api
///     .nearby_points(&iparking_mobile_api::NearbyQuery {
///         lat: 21.0245, lon: 105.8530, radius_m: Some(1000.0), limit: None, vehicle_class: None,
///     })
///     .await?;
/// println!("{} points", near.points.len());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    language: Option<String>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is a secret: never print it.
        f.debug_struct("Client").field("base", &self.base).finish_non_exhaustive()
    }
}

/// What can go wrong calling the API.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with the error shape.
    #[error("HTTP {status}: {} ({})", .error.code, .error.message)]
    Api {
        /// HTTP status.
        status: u16,
        /// The error body.
        error: ErrorDetail,
    },
    /// The request did not reach the server or the answer was cut.
    #[error("transport: {0}")]
    Transport(#[from] reqwest::Error),
    /// The server answered something that is not the contract.
    #[error("unexpected answer (HTTP {status}): {body}")]
    Unexpected {
        /// HTTP status.
        status: u16,
        /// The first bytes of the body.
        body: String,
    },
}

impl ClientError {
    /// The stable error code, when the server sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { error, .. } => Some(&error.code),
            _ => None,
        }
    }

    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } | Self::Unexpected { status, .. } => Some(*status),
            Self::Transport(e) => e.status().map(|s| s.as_u16()),
        }
    }
}

impl Client {
    /// A client for the server at `base` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base: impl Into<String>) -> Self {
        install_tls_provider();
        Self::with_http(reqwest::Client::new(), base)
    }

    /// A client sharing an existing `reqwest::Client` (connection pool).
    pub fn with_http(http: reqwest::Client, base: impl Into<String>) -> Self {
        Self { http, base: base.into().trim_end_matches('/').to_owned(), token: None, language: None }
    }

    /// The same client, authenticated with a bearer token.
    pub fn with_token(&self, token: impl Into<String>) -> Self {
        Self { token: Some(token.into()), ..self.clone() }
    }

    /// The same client, asking for messages in `lang` (`vi` or `en`).
    pub fn with_language(&self, lang: impl Into<String>) -> Self {
        Self { language: Some(lang.into()), ..self.clone() }
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The bearer token this client sends, if any.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(l) = &self.language {
            req = req.header(reqwest::header::ACCEPT_LANGUAGE, l);
        }
        req
    }

    async fn send<T: DeserializeOwned>(req: reqwest::RequestBuilder) -> Result<T, ClientError> {
        let resp = req.send().await?;
        let status = resp.status();
        let bytes = resp.bytes().await?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|_| unexpected(status, &bytes));
        }
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) => Err(ClientError::Api { status: status.as_u16(), error: body.error }),
            Err(_) => Err(unexpected(status, &bytes)),
        }
    }

    /// Sends a request whose success is 204 No Content.
    async fn send_empty(req: reqwest::RequestBuilder) -> Result<(), ClientError> {
        let resp = req.send().await?;
        let status = resp.status();
        if status == StatusCode::NO_CONTENT {
            return Ok(());
        }
        let bytes = resp.bytes().await?;
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) => Err(ClientError::Api { status: status.as_u16(), error: body.error }),
            Err(_) => Err(unexpected(status, &bytes)),
        }
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        Self::send(self.request(Method::GET, path)).await
    }

    async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T, ClientError> {
        Self::send(self.request(Method::POST, path).json(body)).await
    }

    /// `GET /healthz`.
    pub async fn healthz(&self) -> Result<HealthView, ClientError> {
        self.get("/healthz").await
    }

    /// `GET /readyz`.
    pub async fn readyz(&self) -> Result<ReadyView, ClientError> {
        self.get("/readyz").await
    }

    /// `GET /v1/points`: open points near a position, nearest first.
    pub async fn nearby_points(&self, q: &NearbyQuery) -> Result<NearbyResponse, ClientError> {
        Self::send(self.request(Method::GET, "/v1/points").query(q)).await
    }

    /// `GET /v1/points/{code}`.
    pub async fn point(&self, code: &str) -> Result<PointView, ClientError> {
        self.get(&format!("/v1/points/{}", encode_segment(code))).await
    }

    /// `GET /v1/districts`.
    pub async fn districts(&self) -> Result<Vec<DistrictView>, ClientError> {
        self.get("/v1/districts").await
    }

    /// `POST /v1/admin/districts`.
    pub async fn create_district(&self, body: &CreateDistrict) -> Result<DistrictView, ClientError> {
        self.post("/v1/admin/districts", body).await
    }

    /// `POST /v1/admin/streets`.
    pub async fn create_street(&self, body: &CreateStreet) -> Result<StreetView, ClientError> {
        self.post("/v1/admin/streets", body).await
    }

    /// `GET /v1/admin/streets?district=`.
    pub async fn streets(&self, district: &str) -> Result<Vec<StreetView>, ClientError> {
        Self::send(self.request(Method::GET, "/v1/admin/streets").query(&[("district", district)])).await
    }

    /// `POST /v1/admin/points`.
    pub async fn create_point(&self, body: &CreatePoint) -> Result<PointView, ClientError> {
        self.post("/v1/admin/points", body).await
    }

    /// `PATCH /v1/admin/points/{code}`.
    pub async fn update_point(&self, code: &str, body: &UpdatePoint) -> Result<PointView, ClientError> {
        Self::send(self.request(Method::PATCH, &format!("/v1/admin/points/{}", encode_segment(code))).json(body)).await
    }

    /// `POST /v1/admin/points/{code}/close`.
    pub async fn close_point(&self, code: &str) -> Result<PointView, ClientError> {
        self.post(&format!("/v1/admin/points/{}/close", encode_segment(code)), &serde_json::json!({})).await
    }

    /// `POST /v1/admin/points/{code}/open`.
    pub async fn open_point(&self, code: &str) -> Result<PointView, ClientError> {
        self.post(&format!("/v1/admin/points/{}/open", encode_segment(code)), &serde_json::json!({})).await
    }

    /// `POST /v1/admin/points/import`: the file's bytes as the body.
    pub async fn import_points(
        &self,
        format: ImportFormat,
        mode: ImportMode,
        file: Vec<u8>,
    ) -> Result<ImportReport, ClientError> {
        let q = ImportQuery { format, mode: Some(mode) };
        let content_type = match format {
            ImportFormat::Geojson => "application/geo+json",
            ImportFormat::Csv => "text/csv",
        };
        Self::send(
            self.request(Method::POST, "/v1/admin/points/import")
                .query(&q)
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(file),
        )
        .await
    }

    /// `POST /v1/quotes`: price a stay (or find how long an amount buys).
    pub async fn quote(&self, body: &QuoteRequest) -> Result<QuoteView, ClientError> {
        self.post("/v1/quotes", body).await
    }

    /// `GET /v1/points/{code}/tariff`: a point's prices on a day.
    pub async fn point_tariff(&self, code: &str, q: &PointTariffQuery) -> Result<PointTariffView, ClientError> {
        Self::send(self.request(Method::GET, &format!("/v1/points/{}/tariff", encode_segment(code))).query(q)).await
    }

    /// `POST /v1/admin/tariffs`: publish a tariff.
    pub async fn publish_tariff(&self, spec: &TariffSpec) -> Result<TariffView, ClientError> {
        self.post("/v1/admin/tariffs", spec).await
    }

    /// `GET /v1/admin/tariffs`.
    pub async fn tariffs(&self, q: &TariffListQuery) -> Result<Vec<TariffView>, ClientError> {
        Self::send(self.request(Method::GET, "/v1/admin/tariffs").query(q)).await
    }

    /// `POST /v1/admin/tariffs/{id}/retire`.
    pub async fn retire_tariff(&self, id: i64, body: &RetireTariff) -> Result<TariffView, ClientError> {
        self.post(&format!("/v1/admin/tariffs/{id}/retire"), body).await
    }

    async fn post_idem<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        key: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        Self::send(self.request(Method::POST, path).header("Idempotency-Key", key).json(body)).await
    }

    /// `POST /v1/auth/otp`: text a login code to `phone`.
    pub async fn send_otp(&self, phone: &str) -> Result<OtpSent, ClientError> {
        self.post("/v1/auth/otp", &OtpRequest { phone: phone.to_owned() }).await
    }

    /// `POST /v1/auth/token`: exchange phone and code for a driver token.
    pub async fn login(&self, phone: &str, code: &str) -> Result<DriverToken, ClientError> {
        self.post("/v1/auth/token", &TokenRequest { phone: phone.to_owned(), code: code.to_owned() }).await
    }

    /// `POST /v1/auth/logout`.
    pub async fn logout(&self) -> Result<(), ClientError> {
        Self::send_empty(self.request(Method::POST, "/v1/auth/logout")).await
    }

    /// `POST /v1/auth/logout-all`: ends every session of the driver, this one included.
    pub async fn logout_everywhere(&self) -> Result<LoggedOutEverywhere, ClientError> {
        Self::send(self.request(Method::POST, "/v1/auth/logout-all")).await
    }

    /// `GET /v1/push/key`.
    pub async fn push_key(&self) -> Result<PushKeyView, ClientError> {
        self.get("/v1/push/key").await
    }

    /// `POST /v1/me/push-subscriptions`.
    pub async fn subscribe_push(&self, body: &PushSubscriptionBody) -> Result<PushSubscriptionView, ClientError> {
        self.post("/v1/me/push-subscriptions", body).await
    }

    /// `GET /v1/me/push-subscriptions`.
    pub async fn push_subscriptions(&self) -> Result<Vec<PushSubscriptionView>, ClientError> {
        self.get("/v1/me/push-subscriptions").await
    }

    /// `DELETE /v1/me/push-subscriptions/{id}`.
    pub async fn unsubscribe_push(&self, id: i64) -> Result<(), ClientError> {
        Self::send_empty(self.request(Method::DELETE, &format!("/v1/me/push-subscriptions/{id}"))).await
    }

    /// `GET /v1/me/vehicles`.
    pub async fn vehicles(&self) -> Result<Vec<VehicleView>, ClientError> {
        self.get("/v1/me/vehicles").await
    }

    /// `POST /v1/me/vehicles`.
    pub async fn add_vehicle(&self, plate: &str, vehicle_class: VehicleClass) -> Result<VehicleView, ClientError> {
        self.post("/v1/me/vehicles", &AddVehicle { plate: plate.to_owned(), vehicle_class }).await
    }

    /// `DELETE /v1/me/vehicles/{id}`.
    pub async fn remove_vehicle(&self, id: i64) -> Result<(), ClientError> {
        Self::send_empty(self.request(Method::DELETE, &format!("/v1/me/vehicles/{id}"))).await
    }

    /// `GET /v1/me/wallet`.
    pub async fn wallet(&self) -> Result<WalletView, ClientError> {
        self.get("/v1/me/wallet").await
    }

    /// `POST /v1/me/wallet/sandbox-topups` (demo sandbox only).
    pub async fn sandbox_topup(&self, amount: i64, idempotency_key: &str) -> Result<WalletView, ClientError> {
        self.post_idem("/v1/me/wallet/sandbox-topups", idempotency_key, &SandboxTopup { amount }).await
    }

    /// `POST /v1/me/wallet/topups`: a card top-up (credited when the processor confirms).
    pub async fn topup(&self, amount: i64, idempotency_key: &str) -> Result<TopupView, ClientError> {
        self.post_idem("/v1/me/wallet/topups", idempotency_key, &TopupRequest { amount }).await
    }

    /// `POST /v1/me/cards/setups`: start saving a card.
    pub async fn create_card_setup(&self, idempotency_key: &str) -> Result<CardSetupView, ClientError> {
        self.post_idem("/v1/me/cards/setups", idempotency_key, &serde_json::json!({})).await
    }

    /// `GET /v1/me/cards`.
    pub async fn cards(&self) -> Result<Vec<CardView>, ClientError> {
        self.get("/v1/me/cards").await
    }

    /// `DELETE /v1/me/cards/{id}`.
    pub async fn remove_card(&self, id: i64) -> Result<(), ClientError> {
        Self::send_empty(self.request(Method::DELETE, &format!("/v1/me/cards/{id}"))).await
    }

    /// `POST /v1/sessions` paid by card: the session, or the charge waiting for 3-D Secure.
    pub async fn start_session_by_card(
        &self,
        body: &StartSession,
        idempotency_key: &str,
    ) -> Result<CardPayment, ClientError> {
        let req = self.request(Method::POST, "/v1/sessions").header("Idempotency-Key", idempotency_key).json(body);
        Self::send_card(req).await
    }

    /// `POST /v1/sessions/{id}/extend` paid by card.
    pub async fn extend_session_by_card(
        &self,
        id: i64,
        body: &ExtendSession,
        idempotency_key: &str,
    ) -> Result<CardPayment, ClientError> {
        let req = self
            .request(Method::POST, &format!("/v1/sessions/{id}/extend"))
            .header("Idempotency-Key", idempotency_key)
            .json(body);
        Self::send_card(req).await
    }

    async fn send_card(req: reqwest::RequestBuilder) -> Result<CardPayment, ClientError> {
        let resp = req.send().await?;
        let status = resp.status();
        let bytes = resp.bytes().await?;
        if status == StatusCode::ACCEPTED {
            return serde_json::from_slice(&bytes).map(CardPayment::Pending).map_err(|_| unexpected(status, &bytes));
        }
        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .map(|s| CardPayment::Paid(Box::new(s)))
                .map_err(|_| unexpected(status, &bytes));
        }
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) => Err(ClientError::Api { status: status.as_u16(), error: body.error }),
            Err(_) => Err(unexpected(status, &bytes)),
        }
    }

    /// `GET /v1/me/card-charges/{id}`.
    pub async fn card_charge(&self, id: i64) -> Result<CardChargeView, ClientError> {
        self.get(&format!("/v1/me/card-charges/{id}")).await
    }

    /// `GET /v1/me/refunds`.
    pub async fn refunds(&self) -> Result<Vec<RefundView>, ClientError> {
        self.get("/v1/me/refunds").await
    }

    /// `POST /v1/me/close`: close the account; the wallet goes back to the cards.
    pub async fn close_account(&self, idempotency_key: &str) -> Result<CloseAccountView, ClientError> {
        self.post_idem("/v1/me/close", idempotency_key, &serde_json::json!({})).await
    }

    /// `POST /v1/admin/sessions/{id}/refunds` (admin or finance).
    pub async fn staff_refund(
        &self,
        session_id: i64,
        body: &StaffRefundRequest,
        idempotency_key: &str,
    ) -> Result<StaffRefundView, ClientError> {
        self.post_idem(&format!("/v1/admin/sessions/{session_id}/refunds"), idempotency_key, body).await
    }

    /// `POST /v1/sessions`.
    pub async fn start_session(&self, body: &StartSession, idempotency_key: &str) -> Result<SessionView, ClientError> {
        self.post_idem("/v1/sessions", idempotency_key, body).await
    }

    /// `POST /v1/sessions/{id}/extend`.
    pub async fn extend_session(
        &self,
        id: i64,
        body: &ExtendSession,
        idempotency_key: &str,
    ) -> Result<SessionView, ClientError> {
        self.post_idem(&format!("/v1/sessions/{id}/extend"), idempotency_key, body).await
    }

    /// `POST /v1/sessions/{id}/stop`.
    pub async fn stop_session(&self, id: i64, idempotency_key: &str) -> Result<SessionView, ClientError> {
        self.post_idem(&format!("/v1/sessions/{id}/stop"), idempotency_key, &serde_json::json!({})).await
    }

    /// `PATCH /v1/sessions/{id}`: correct the plate.
    pub async fn correct_plate(&self, id: i64, plate: &str) -> Result<SessionView, ClientError> {
        Self::send(
            self.request(Method::PATCH, &format!("/v1/sessions/{id}")).json(&CorrectPlate { plate: plate.to_owned() }),
        )
        .await
    }

    /// `GET /v1/sessions`.
    pub async fn sessions(&self, q: &SessionListQuery) -> Result<Vec<SessionView>, ClientError> {
        Self::send(self.request(Method::GET, "/v1/sessions").query(q)).await
    }

    /// `GET /v1/sessions/{id}`.
    pub async fn session(&self, id: i64) -> Result<SessionView, ClientError> {
        self.get(&format!("/v1/sessions/{id}")).await
    }

    /// `POST /v1/admin/staff`.
    pub async fn create_staff(&self, body: &CreateStaff) -> Result<StaffCreated, ClientError> {
        self.post("/v1/admin/staff", body).await
    }

    /// `DELETE /v1/admin/tokens/{id}`: revoke a staff token.
    pub async fn revoke_token(&self, token_id: i64) -> Result<(), ClientError> {
        Self::send_empty(self.request(Method::DELETE, &format!("/v1/admin/tokens/{token_id}"))).await
    }

    /// `POST /v1/warden/auth/token`: a warden or inspector logs in on a handheld.
    pub async fn warden_login(&self, username: &str, password: &str, device: &str) -> Result<WardenToken, ClientError> {
        let body =
            WardenLogin { username: username.to_owned(), password: password.to_owned(), device: device.to_owned() };
        self.post("/v1/warden/auth/token", &body).await
    }

    /// `POST /v1/warden/auth/logout`: revokes the token of this call.
    pub async fn warden_logout(&self) -> Result<(), ClientError> {
        Self::send_empty(self.request(Method::POST, "/v1/warden/auth/logout")).await
    }

    /// `GET /v1/warden/checks?plate=&point=`.
    pub async fn check_plate(&self, plate: &str, point: &str) -> Result<PlateCheckView, ClientError> {
        let q = PlateCheckQuery { plate: plate.to_owned(), point: point.to_owned() };
        Self::send(self.request(Method::GET, "/v1/warden/checks").query(&q)).await
    }

    /// `GET /v1/warden/points/{code}/vehicles`.
    pub async fn point_roster(&self, code: &str) -> Result<PointRoster, ClientError> {
        self.get(&format!("/v1/warden/points/{}/vehicles", encode_segment(code))).await
    }

    /// `POST /v1/warden/sessions`: a session paid in cash to the warden.
    pub async fn warden_start_session(
        &self,
        body: &WardenStartSession,
        idempotency_key: &str,
    ) -> Result<CashPaymentView, ClientError> {
        self.post_idem("/v1/warden/sessions", idempotency_key, body).await
    }

    /// `POST /v1/warden/sessions/{id}/extend`: an extension paid in cash to the warden.
    pub async fn warden_extend_session(
        &self,
        id: i64,
        body: &WardenExtendSession,
        idempotency_key: &str,
    ) -> Result<CashPaymentView, ClientError> {
        self.post_idem(&format!("/v1/warden/sessions/{id}/extend"), idempotency_key, body).await
    }

    /// `GET /v1/receipts/{number}?code=`: checks a cash slip (no login needed).
    pub async fn receipt(&self, number: &str, code: &str) -> Result<ReceiptCheckView, ClientError> {
        let q = ReceiptQuery { code: code.to_owned() };
        Self::send(self.request(Method::GET, &format!("/v1/receipts/{}", encode_segment(number))).query(&q)).await
    }

    /// `POST /v1/warden/violations`: a citation with photo evidence (multipart).
    pub async fn create_violation(
        &self,
        form: &ViolationForm,
        idempotency_key: &str,
    ) -> Result<ViolationView, ClientError> {
        let mut parts = reqwest::multipart::Form::new()
            .text("plate", form.plate.clone())
            .text("point", form.point.clone())
            .text("kind", form.kind.as_str())
            .text("note", form.note.clone());
        if let Some(lat) = form.lat {
            parts = parts.text("lat", lat.to_string());
        }
        if let Some(lon) = form.lon {
            parts = parts.text("lon", lon.to_string());
        }
        for p in &form.photos {
            let part = reqwest::multipart::Part::bytes(p.bytes.clone())
                .file_name(p.filename.clone())
                .mime_str(&p.content_type)?;
            parts = parts.part("photo", part);
        }
        Self::send(
            self.request(Method::POST, "/v1/warden/violations")
                .header("Idempotency-Key", idempotency_key)
                .multipart(parts),
        )
        .await
    }

    /// `GET /v1/warden/violations/{number}`.
    pub async fn violation(&self, number: &str) -> Result<ViolationView, ClientError> {
        self.get(&format!("/v1/warden/violations/{}", encode_segment(number))).await
    }

    /// `GET /v1/warden/photos/{sha256}`: a violation photo (staff only); its content type and bytes.
    pub async fn photo(&self, sha256: &str) -> Result<(String, Vec<u8>), ClientError> {
        Self::send_bytes(self.request(Method::GET, &format!("/v1/warden/photos/{}", encode_segment(sha256)))).await
    }

    /// `GET /v1/citations/{number}?plate=&code=`: a citation's details (reason, note, photos)
    /// for whoever holds the ticket (no login needed).
    pub async fn citation(&self, number: &str, plate: &str, code: &str) -> Result<CitationDetails, ClientError> {
        let q = CitationQuery { plate: plate.to_owned(), code: code.to_owned() };
        Self::send(self.request(Method::GET, &format!("/v1/citations/{}", encode_segment(number))).query(&q)).await
    }

    /// `GET /v1/citations/{number}/photos/{index}?plate=&code=`: a citation's photo (index from
    /// 0, in [`CitationDetails::photos`] order) for whoever holds the ticket; its content type
    /// and bytes.
    pub async fn citation_photo(
        &self,
        number: &str,
        index: u32,
        plate: &str,
        code: &str,
    ) -> Result<(String, Vec<u8>), ClientError> {
        let q = CitationQuery { plate: plate.to_owned(), code: code.to_owned() };
        let path = format!("/v1/citations/{}/photos/{index}", encode_segment(number));
        Self::send_bytes(self.request(Method::GET, &path).query(&q)).await
    }

    /// Sends a request whose success is raw bytes: the content type and the bytes.
    async fn send_bytes(req: reqwest::RequestBuilder) -> Result<(String, Vec<u8>), ClientError> {
        let resp = req.send().await?;
        let status = resp.status();
        let content_type =
            resp.headers().get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let bytes = resp.bytes().await?;
        if status.is_success() {
            return Ok((content_type, bytes.to_vec()));
        }
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) => Err(ClientError::Api { status: status.as_u16(), error: body.error }),
            Err(_) => Err(unexpected(status, &bytes)),
        }
    }

    /// `GET /v1/me/citations`: citations on the driver's plates.
    pub async fn citations(&self) -> Result<Vec<DriverCitation>, ClientError> {
        self.get("/v1/me/citations").await
    }

    /// `POST /v1/warden/sync`: actions recorded offline, each applied once.
    pub async fn sync(&self, batch: &SyncBatch) -> Result<SyncResultView, ClientError> {
        self.post("/v1/warden/sync", batch).await
    }

    /// `POST /v1/warden/shifts`: opens a shift.
    pub async fn open_shift(&self, body: &OpenShift, idempotency_key: &str) -> Result<ShiftView, ClientError> {
        self.post_idem("/v1/warden/shifts", idempotency_key, body).await
    }

    /// `GET /v1/warden/shifts/current`: the warden's open shift.
    pub async fn current_shift(&self) -> Result<ShiftView, ClientError> {
        self.get("/v1/warden/shifts/current").await
    }

    /// `GET /v1/warden/shifts/{id}/history`.
    pub async fn shift_history(&self, id: i64) -> Result<ShiftHistoryView, ClientError> {
        self.get(&format!("/v1/warden/shifts/{id}/history")).await
    }

    /// `GET /v1/warden/float`: the warden's prepaid float.
    pub async fn warden_float(&self) -> Result<WardenFloatView, ClientError> {
        self.get("/v1/warden/float").await
    }

    /// `GET /v1/warden/shifts/{id}`.
    pub async fn shift(&self, id: i64) -> Result<ShiftView, ClientError> {
        self.get(&format!("/v1/warden/shifts/{id}")).await
    }

    /// `POST /v1/warden/shifts/{id}/close`: closes a shift with the cash handed over.
    pub async fn close_shift(
        &self,
        id: i64,
        body: &CloseShift,
        idempotency_key: &str,
    ) -> Result<ShiftView, ClientError> {
        self.post_idem(&format!("/v1/warden/shifts/{id}/close"), idempotency_key, body).await
    }
}

/// Installs the process's TLS crypto provider (ring) once. reqwest is built with rustls and no
/// provider of its own, so this must run before any `reqwest::Client` is built; later calls
/// are no-ops.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn unexpected(status: StatusCode, bytes: &[u8]) -> ClientError {
    let body = String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).into_owned();
    ClientError::Unexpected { status: status.as_u16(), body }
}

/// Percent-encodes a path segment (codes are ASCII, but a client must not break on input).
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
