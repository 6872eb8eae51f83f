//! Revenue from the ledger's postings, per district, street, point, channel, day or vehicle
//! class (any combination), in the caller's scope.

use iparking_mobile_api::{RevenueChannel, RevenueQuery, RevenueReport, RevenueRow, RevenueSums, VehicleClass};

use super::{out_of_scope, reader, wants_csv};
use crate::{
    App,
    domain::finance::{self as fin, Csv, RangeError},
    error::AppError,
    store::{
        Principal,
        finance::{RevenueDim, RevenueFilter},
    },
};

/// 400 (unknown) or 422 (repeated: each well-formed, the pair not) for a revenue dimension.
fn bad_group(name: &str, allowed: &[&str], repeated: bool) -> AppError {
    let vi = format!("Không nhóm được theo `{name}` (không có hoặc bị lặp).");
    let en = format!("Cannot group by `{name}` (unknown or repeated).");
    let e = if repeated {
        AppError::unprocessable("invalid_group", vi, en)
    } else {
        AppError::bad_request("invalid_group", vi, en)
    };
    e.with_details(serde_json::json!({ "group": name, "allowed": allowed }))
}

/// The revenue report for a caller (scope applied).
pub async fn revenue_report(app: &App, p: &Principal, q: &RevenueQuery) -> Result<RevenueReport, AppError> {
    reader(p)?;
    report_in(app, &p.district_codes, q).await
}

/// The revenue report anyone may read (the public page, `/public`): the whole city, by the
/// same rules. It holds no personal data: sums of the ledger's postings per place, channel,
/// day or class.
pub async fn public_report(app: &App, q: &RevenueQuery) -> Result<RevenueReport, AppError> {
    report_in(app, &[], q).await
}

/// The report within `scope` (district codes; empty: the whole city).
async fn report_in(app: &App, scope: &[String], q: &RevenueQuery) -> Result<RevenueReport, AppError> {
    let visible = |code: &str| scope.is_empty() || scope.iter().any(|d| d == code);
    let day = |v: &Option<String>, name: &str| {
        v.as_deref().and_then(fin::parse_day).ok_or_else(|| {
            AppError::bad_request(
                "invalid_date",
                format!("Cần ngày `{name}` dạng YYYY-MM-DD."),
                format!("`{name}` must be a day written YYYY-MM-DD."),
            )
        })
    };
    let (from, to) = (day(&q.from, "from")?, day(&q.to, "to")?);
    let range = fin::check_range(from, to).map_err(|e| match e {
        RangeError::Reversed => {
            AppError::unprocessable("invalid_range", "Ngày `to` đứng trước `from`.", "`to` is before `from`.")
        }
        RangeError::TooLong => AppError::unprocessable(
            "invalid_range",
            format!("Khoảng thời gian tối đa {} ngày.", fin::MAX_RANGE_DAYS),
            format!("A report covers at most {} days.", fin::MAX_RANGE_DAYS),
        ),
    })?;
    let mut dims = Vec::new();
    for name in q.group_by.as_deref().unwrap_or("").split(',').map(|s| s.trim_matches(' ')).filter(|s| !s.is_empty()) {
        let allowed: Vec<&str> = RevenueDim::ALL.iter().map(|d| d.as_str()).collect();
        let dim = RevenueDim::parse(name).ok_or_else(|| bad_group(name, &allowed, false))?;
        if dims.contains(&dim) {
            // Each dimension well-formed; grouping by one twice is a rule between items (422).
            return Err(bad_group(name, &allowed, true));
        }
        dims.push(dim);
    }
    wants_csv(q.format.as_deref())?;
    let mut districts: Vec<String> = scope.to_vec();
    if let Some(code) = q.district.as_deref().map(str::trim).filter(|c| !c.is_empty()) {
        if !app.store.districts().await?.iter().any(|d| d.code == code) {
            return Err(AppError::not_found("district_not_found", "Không có quận này.", "No such district."));
        }
        if !visible(code) {
            return Err(out_of_scope(&format!("quận {code}")));
        }
        districts = vec![code.to_owned()];
    }
    if let Some(street) = q.street {
        let s = app
            .store
            .street(street)
            .await?
            .ok_or_else(|| AppError::not_found("street_not_found", "Không có tuyến phố này.", "No such street."))?;
        if !visible(&s.district_code) {
            return Err(out_of_scope(&format!("quận {}", s.district_code)));
        }
    }
    let filter =
        RevenueFilter { from: range.start(), to: range.end(), dims: dims.clone(), districts, street_id: q.street };
    let raw = app.store.revenue(&filter).await?;
    let mut rows: Vec<RevenueRow> = raw
        .into_iter()
        .map(|r| RevenueRow {
            district_code: r.district_code,
            district_name: r.district_name,
            street_id: r.street_id,
            street_name: r.street_name,
            point_code: r.point_code,
            point_name: r.point_name,
            channel: r.channel.as_deref().and_then(RevenueChannel::parse),
            day: r.day.as_deref().and_then(fin::parse_day),
            vehicle_class: r.vehicle_class.as_deref().and_then(VehicleClass::parse),
            sums: RevenueSums {
                gross: r.gross,
                carrier_share: r.carrier_share,
                net: r.gross - r.carrier_share,
                postings: r.postings,
            },
        })
        .filter(|r| dims.is_empty() || r.sums.postings > 0 || r.sums.gross != 0 || r.sums.carrier_share != 0)
        .collect();
    rows.sort_by(|a, b| {
        for d in &dims {
            let o = match d {
                RevenueDim::District => a.district_code.cmp(&b.district_code),
                RevenueDim::Street => a
                    .district_code
                    .cmp(&b.district_code)
                    .then(a.street_name.cmp(&b.street_name))
                    .then(a.street_id.cmp(&b.street_id)),
                RevenueDim::Point => a.point_code.cmp(&b.point_code),
                RevenueDim::Channel => a.channel.map(|c| c.as_str()).cmp(&b.channel.map(|c| c.as_str())),
                RevenueDim::Day => a.day.cmp(&b.day),
                RevenueDim::VehicleClass => {
                    a.vehicle_class.map(|c| c.as_str()).cmp(&b.vehicle_class.map(|c| c.as_str()))
                }
            };
            if o.is_ne() {
                return o;
            }
        }
        std::cmp::Ordering::Equal
    });
    let totals = rows.iter().fold(RevenueSums::default(), |t, r| RevenueSums {
        gross: t.gross + r.sums.gross,
        carrier_share: t.carrier_share + r.sums.carrier_share,
        net: t.net + r.sums.net,
        postings: t.postings + r.sums.postings,
    });
    Ok(RevenueReport {
        from: range.from,
        to: range.to,
        group_by: dims.iter().map(|d| d.as_str().to_owned()).collect(),
        scope: scope.to_vec(),
        rows,
        totals,
    })
}

/// The report as CSV (UTF-8 with BOM).
pub fn revenue_csv(r: &RevenueReport) -> String {
    let mut header: Vec<&str> = Vec::new();
    for g in &r.group_by {
        match g.as_str() {
            "district" => header.extend(["district_code", "district_name"]),
            "street" => header.extend(["street_id", "street_name"]),
            "point" => header.extend(["point_code", "point_name"]),
            other => header.push(match other {
                "channel" => "channel",
                "day" => "day",
                _ => "vehicle_class",
            }),
        }
    }
    header.extend(["gross", "carrier_share", "net", "postings"]);
    let mut csv = Csv::new(&header);
    let sums =
        |s: &RevenueSums| [s.gross.to_string(), s.carrier_share.to_string(), s.net.to_string(), s.postings.to_string()];
    for row in &r.rows {
        let mut f: Vec<String> = Vec::new();
        for g in &r.group_by {
            match g.as_str() {
                "district" => {
                    f.push(row.district_code.clone().unwrap_or_default());
                    f.push(row.district_name.clone().unwrap_or_default());
                }
                "street" => {
                    f.push(row.street_id.map(|i| i.to_string()).unwrap_or_default());
                    f.push(row.street_name.clone().unwrap_or_default());
                }
                "point" => {
                    f.push(row.point_code.clone().unwrap_or_default());
                    f.push(row.point_name.clone().unwrap_or_default());
                }
                "channel" => f.push(row.channel.map(|c| c.as_str().to_owned()).unwrap_or_default()),
                "day" => f.push(row.day.map(|d| d.to_string()).unwrap_or_default()),
                _ => f.push(row.vehicle_class.map(|c| c.as_str().to_owned()).unwrap_or_default()),
            }
        }
        f.extend(sums(&row.sums));
        csv.row(f);
    }
    // A report without dimensions is its total row already.
    if !r.group_by.is_empty() {
        let mut total = vec![String::new(); header.len() - 4];
        total[0] = "TOTAL".into();
        total.extend(sums(&r.totals));
        csv.row(total);
    }
    csv.finish()
}
