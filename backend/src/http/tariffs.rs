//! Tariffs and quotes: drivers ask what a stay costs; admins publish and retire tariffs.

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
};
use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use iparking_mobile_api::{
    ClassPrices, ErrorBody, PointStatus, PointTariffQuery, PointTariffView, QuoteRequest, QuoteView, RetireTariff,
    TariffListQuery, TariffScope, TariffSpec, TariffStatus, TariffView, TierView, VehicleClass, WindowView,
};

use super::{
    AppState,
    extract::{Admin, Json, Path, Query},
    prefers_english,
};
use crate::{
    app::points::point_ref,
    app::points::{normalise_code, point_not_found},
    app::quotes::quote_view,
    domain::{
        money::Vnd,
        tariff::{LOCAL_TZ, Tariff, resolve, truncate_micros},
    },
    error::AppError,
    store::PointRecord,
};

/// How far back an admin's "now" may be (clock skew between a laptop and the server).
const CLOCK_SKEW: Duration = Duration::minutes(5);
/// Quotes are for stays starting at most this far ahead.
const MAX_QUOTE_AHEAD_DAYS: i64 = 366;

fn class_not_allowed(p: &PointRecord, class: VehicleClass) -> AppError {
    let allowed: Vec<&str> = p.vehicle_classes.iter().map(|c| c.as_str()).collect();
    AppError::unprocessable(
        "vehicle_class_not_allowed",
        format!("Điểm {} không nhận loại xe {} (chỉ nhận: {}).", p.code, class.as_str(), allowed.join(", ")),
        format!("Point {} does not take {} vehicles (allowed: {}).", p.code, class.as_str(), allowed.join(", ")),
    )
}

fn no_tariff(p: &PointRecord, class: VehicleClass) -> AppError {
    AppError::unprocessable(
        "no_tariff",
        format!("Chưa có biểu giá cho loại xe {} tại điểm {}.", class.as_str(), p.code),
        format!("No tariff prices {} vehicles at point {} at that time.", class.as_str(), p.code),
    )
}

/// Prices a stay at a point: give `minutes`, or an `amount` to learn the longest stay it buys.
#[utoipa::path(
    post, path = "/v1/quotes", tag = "tariffs", request_body = QuoteRequest,
    responses(
        (status = 200, description = "The price, line by line", body = QuoteView),
        (status = 400, description = "Neither or both of minutes/amount, zero duration, bad start", body = ErrorBody),
        (status = 404, description = "Unknown point", body = ErrorBody),
        (status = 409, description = "The point is closed", body = ErrorBody),
        (status = 422, description = "Class not allowed, no tariff, stay longer than the maximum, amount too small", body = ErrorBody),
    )
)]
pub async fn create_quote(
    State(app): State<AppState>,
    headers: HeaderMap,
    Json(req): Json<QuoteRequest>,
) -> Result<Json<QuoteView>, AppError> {
    let english = prefers_english(&headers);
    let code = normalise_code(&req.point_code);
    let point = app.store.point(&code).await?.ok_or_else(|| point_not_found(&code))?;
    if point.status == PointStatus::Closed {
        return Err(AppError::conflict(
            "point_closed",
            format!("Điểm {} đang tạm đóng.", point.code),
            format!("Point {} is closed.", point.code),
        ));
    }
    if !point.vehicle_classes.contains(&req.vehicle_class) {
        return Err(class_not_allowed(&point, req.vehicle_class));
    }
    let now = app.clock.now();
    let start = req.start.unwrap_or(now);
    let earliest = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).single().unwrap_or(now);
    if start < earliest || start > now + Duration::days(MAX_QUOTE_AHEAD_DAYS) {
        return Err(AppError::bad_request(
            "invalid_start",
            format!("Thời điểm bắt đầu phải trong vòng {MAX_QUOTE_AHEAD_DAYS} ngày tới."),
            format!("The start must be within the next {MAX_QUOTE_AHEAD_DAYS} days."),
        ));
    }
    let book = app.tariffs();
    let tariff = resolve(&book.tariffs, &point_ref(&point), req.vehicle_class, start)
        .ok_or_else(|| no_tariff(&point, req.vehicle_class))?;
    let channel = req.channel.unwrap_or_default();
    let priced = match (req.minutes, req.amount) {
        (Some(minutes), None) => tariff.quote(start, minutes, channel),
        (None, Some(amount)) if amount > 0 => tariff.affordable(start, 0, Vnd(amount), channel),
        (None, Some(_)) => {
            return Err(AppError::bad_request("invalid_amount", "Số tiền phải lớn hơn 0.", "amount must be positive."));
        }
        _ => {
            return Err(AppError::bad_request(
                "invalid_duration",
                "Gửi một trong hai: minutes (số phút) hoặc amount (số tiền).",
                "Give exactly one of minutes or amount.",
            ));
        }
    }
    .map_err(AppError::from)?;
    Ok(Json(quote_view(tariff, &point.code, req.vehicle_class, channel, &priced, english)))
}

fn window_views(t: &Tariff, date: NaiveDate) -> Vec<WindowView> {
    t.windows_on(date)
        .into_iter()
        .map(|w| WindowView {
            label: w.label.clone(),
            start: w.start_hhmm(),
            end: w.end_hhmm(),
            tiers: w
                .tiers
                .iter()
                .enumerate()
                .map(|(i, tier)| TierView {
                    from_hour: tier.from_hour,
                    to_hour: w.tiers.get(i + 1).map(|next| next.from_hour - 1),
                    price: tier.price.get(),
                })
                .collect(),
            block_price: w.block_price.map(Vnd::get),
        })
        .collect()
}

/// A point's prices on a local day (default today), per vehicle class, as an app shows them.
#[utoipa::path(
    get, path = "/v1/points/{code}/tariff", tag = "tariffs",
    params(("code" = String, Path, description = "Signboard code"), PointTariffQuery),
    responses(
        (status = 200, description = "Prices per class", body = PointTariffView),
        (status = 404, description = "Unknown point", body = ErrorBody),
        (status = 422, description = "Class not allowed at the point", body = ErrorBody),
    )
)]
pub async fn point_tariff(
    State(app): State<AppState>,
    Path(code): Path<String>,
    Query(q): Query<PointTariffQuery>,
) -> Result<Json<PointTariffView>, AppError> {
    let code = normalise_code(&code);
    let point = app.store.point(&code).await?.ok_or_else(|| point_not_found(&code))?;
    let now = app.clock.now();
    let today = now.with_timezone(&LOCAL_TZ).date_naive();
    let date = q.date.unwrap_or(today);
    let at = if date == today {
        now
    } else {
        LOCAL_TZ
            .from_local_datetime(&date.and_hms_opt(0, 0, 0).unwrap_or_default())
            .earliest()
            .map_or(now, |d| d.with_timezone(&Utc))
    };
    let classes = match q.vehicle_class {
        Some(c) if !point.vehicle_classes.contains(&c) => return Err(class_not_allowed(&point, c)),
        Some(c) => vec![c],
        None => point.vehicle_classes.clone(),
    };
    let book = app.tariffs();
    let classes = classes
        .into_iter()
        .filter_map(|class| {
            let t = resolve(&book.tariffs, &point_ref(&point), class, at)?;
            Some(ClassPrices {
                vehicle_class: class,
                tariff_id: t.id,
                tariff_name: t.name.clone(),
                turn_minutes: t.turn_minutes,
                windows: window_views(t, date),
                daily_cap: t.daily_cap.map(Vnd::get),
                minimum_charge: t.minimum_charge.map(Vnd::get),
                max_stay_minutes: t.max_stay_minutes,
                grace_minutes: t.grace_minutes,
                sms_surcharge_per_turn: t.sms_surcharge.map(Vnd::get),
            })
        })
        .collect();
    Ok(Json(PointTariffView { point_code: point.code, date, classes }))
}

fn tariff_view(t: &Tariff, now: DateTime<Utc>) -> TariffView {
    let status = if t.in_force_at(now) {
        TariffStatus::Active
    } else if t.valid_from > now {
        TariffStatus::Scheduled
    } else {
        TariffStatus::Ended
    };
    TariffView { id: t.id, status, published_at: t.published_at.unwrap_or(t.valid_from), spec: t.to_spec() }
}

/// Checks that the scope names something that exists and that the admin covers it.
async fn check_scope(app: &AppState, admin: &Admin, scope: &TariffScope) -> Result<(), AppError> {
    match scope {
        TariffScope::City => admin.require_city_wide(),
        TariffScope::District { district } => {
            if !app.store.districts().await?.iter().any(|d| &d.code == district) {
                return Err(AppError::not_found(
                    "district_not_found",
                    format!("Không có quận mã {district}."),
                    format!("No district with code {district}."),
                ));
            }
            admin.require_district(district)
        }
        TariffScope::Street { street_id } => {
            let s =
                app.store.street(*street_id).await?.ok_or_else(|| {
                    AppError::not_found("street_not_found", "Không có tuyến phố này.", "No such street.")
                })?;
            admin.require_district(&s.district_code)
        }
        TariffScope::Point { point } => {
            let p = app.store.point(point).await?.ok_or_else(|| point_not_found(point))?;
            admin.require_district(&p.district_code)
        }
    }
}

/// Publishes a tariff. It never changes afterwards (only its end of validity can be brought
/// forward), so prices already quoted or bought stay as they were.
#[utoipa::path(
    post, path = "/v1/admin/tariffs", tag = "admin", request_body = TariffSpec,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Published", body = TariffView),
        (status = 422, description = "Invalid tariff (windows, tiers, prices, validity); valid_from in the past", body = ErrorBody),
        (status = 403, description = "Scope outside the admin's districts", body = ErrorBody),
        (status = 404, description = "Unknown district, street or point", body = ErrorBody),
        (status = 409, description = "Overlaps a tariff of the same scope, class and time", body = ErrorBody),
    )
)]
pub async fn publish_tariff(
    State(app): State<AppState>,
    admin: Admin,
    Json(spec): Json<TariffSpec>,
) -> Result<(StatusCode, Json<TariffView>), AppError> {
    // A tariff's rules are mostly between its fields (windows covering the week once, tiers
    // ascending): a spec that breaks them is well-formed but unprocessable (422).
    let tariff = Tariff::from_spec(0, &spec)
        .map_err(|e| AppError { status: StatusCode::UNPROCESSABLE_ENTITY, ..AppError::from(e) })?;
    check_scope(&app, &admin, &tariff.scope).await?;
    let now = app.clock.now();
    if tariff.valid_from < now - CLOCK_SKEW {
        return Err(AppError::unprocessable(
            "valid_from_in_past",
            "Không thể công bố biểu giá có hiệu lực từ quá khứ: giá đã bán không được thay đổi.",
            "A tariff cannot take effect in the past: prices already sold must not change.",
        ));
    }
    match app.store.publish_tariff(&tariff, Some(admin.0.staff_id), now).await? {
        Ok(published) => {
            if let Err(e) = app.refresh_tariffs().await {
                tracing::warn!(error = %e, "tariff reload failed after publishing");
            }
            tracing::info!(tariff.id = published.id, staff.id = admin.0.staff_id, "tariff published");
            Ok((StatusCode::CREATED, Json(tariff_view(&published, now))))
        }
        Err(ids) => {
            let ids: Vec<String> = ids.iter().map(i64::to_string).collect();
            Err(AppError::conflict(
                "tariff_overlap",
                format!("Trùng phạm vi, loại xe và thời gian hiệu lực với biểu giá {}.", ids.join(", ")),
                format!("Overlaps tariff(s) {} at the same scope, vehicle class and time.", ids.join(", ")),
            ))
        }
    }
}

/// Every tariff, newest first.
#[utoipa::path(
    get, path = "/v1/admin/tariffs", tag = "admin", params(TariffListQuery),
    security(("bearer" = [])),
    responses((status = 200, description = "Tariffs", body = [TariffView]))
)]
pub async fn list_tariffs(
    State(app): State<AppState>,
    _admin: Admin,
    Query(q): Query<TariffListQuery>,
) -> Result<Json<Vec<TariffView>>, AppError> {
    let now = app.clock.now();
    let book = app.tariffs();
    let mut views: Vec<TariffView> = book
        .tariffs
        .iter()
        .filter(|t| !q.current_only.unwrap_or(false) || t.valid_until.is_none_or(|u| u > now))
        .map(|t| tariff_view(t, now))
        .collect();
    views.reverse();
    Ok(Json(views))
}

/// Ends a tariff's validity (now, or at a later instant). Sessions already bought keep
/// the price they were sold at.
#[utoipa::path(
    post, path = "/v1/admin/tariffs/{id}/retire", tag = "admin", request_body = RetireTariff,
    params(("id" = i64, Path, description = "Tariff id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Retired", body = TariffView),
        (status = 403, description = "Scope outside the admin's districts", body = ErrorBody),
        (status = 404, description = "No such tariff", body = ErrorBody),
        (status = 422, description = "`at` is in the past", body = ErrorBody),
    )
)]
pub async fn retire_tariff(
    State(app): State<AppState>,
    admin: Admin,
    Path(id): Path<i64>,
    Json(body): Json<RetireTariff>,
) -> Result<Json<TariffView>, AppError> {
    let not_found =
        || AppError::not_found("tariff_not_found", format!("Không có biểu giá {id}."), format!("No tariff {id}."));
    let now = app.clock.now();
    let at = body.at.map_or(now, truncate_micros);
    if at < now - CLOCK_SKEW {
        return Err(AppError::unprocessable(
            "retire_in_past",
            "Không thể kết thúc biểu giá trong quá khứ.",
            "A tariff cannot be ended in the past.",
        ));
    }
    let existing = app.tariffs().get(id).cloned();
    let existing = match existing {
        Some(t) => t,
        None => app.store.tariffs().await?.into_iter().find(|t| t.id == id).ok_or_else(not_found)?,
    };
    check_scope(&app, &admin, &existing.scope).await?;
    let t = app.store.retire_tariff(id, at, Some(admin.0.staff_id), now).await?.ok_or_else(not_found)?;
    if let Err(e) = app.refresh_tariffs().await {
        tracing::warn!(error = %e, "tariff reload failed after retiring");
    }
    tracing::info!(tariff.id = id, staff.id = admin.0.staff_id, "tariff retired");
    Ok(Json(tariff_view(&t, now)))
}
