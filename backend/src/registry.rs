//! Registry operations that span several rows: imports and seeds. Both go through
//! [`import_drafts`], so a seed obeys exactly the rules an import does.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use iparking_mobile_api::{ImportMode, ImportReport, ImportRowError};

use crate::{
    domain::tariff::Tariff,
    import::{ParsedRows, PointDraft},
    store::{NewPointOnStreet, Principal, Store, StoreResult},
};

/// Checks parsed rows against the registry and writes the valid ones in one transaction.
///
/// With [`ImportMode::AllOrNothing`], one bad row means nothing is written. `scope`, when
/// given, rejects rows in districts the principal does not cover.
pub async fn import_drafts(
    store: &dyn Store,
    rows: ParsedRows,
    mode: ImportMode,
    scope: Option<&Principal>,
    now: DateTime<Utc>,
) -> StoreResult<ImportReport> {
    let districts: HashMap<String, i64> = store.districts().await?.into_iter().map(|d| (d.code, d.id)).collect();
    let existing: HashSet<String> = store.point_codes().await?.into_iter().collect();
    let total = rows.len() as u64;
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut rejected: Vec<ImportRowError> = Vec::new();
    let mut valid: Vec<NewPointOnStreet> = Vec::new();
    for row in rows {
        let d = match row {
            Ok(d) => d,
            Err(e) => {
                rejected.push(e);
                continue;
            }
        };
        let reject = |msg: String| ImportRowError { line: d.line, code: Some(d.code.clone()), message: msg };
        let Some(&district_id) = districts.get(&d.district) else {
            rejected.push(reject(format!("unknown district {}", d.district)));
            continue;
        };
        if scope.is_some_and(|p| !p.covers_district(&d.district)) {
            rejected.push(reject(format!("your account may not change district {}", d.district)));
            continue;
        }
        if existing.contains(&d.code) {
            rejected.push(reject(format!("point {} already exists", d.code)));
            continue;
        }
        if let Some(first) = seen.get(&d.code) {
            rejected.push(reject(format!("point {} is already on line {first}", d.code)));
            continue;
        }
        seen.insert(d.code.clone(), d.line);
        valid.push(to_new_point(d, district_id));
    }
    rejected.sort_by_key(|e| e.line);
    let imported = if (mode == ImportMode::AllOrNothing && !rejected.is_empty()) || valid.is_empty() {
        0
    } else {
        store.insert_points(&valid, now).await?
    };
    Ok(ImportReport { mode, rows: total, imported, rejected })
}

fn to_new_point(d: PointDraft, district_id: i64) -> NewPointOnStreet {
    NewPointOnStreet {
        district_id,
        street_name: d.street,
        code: d.code,
        name: d.name,
        lat: d.lat,
        lon: d.lon,
        curb: d.curb,
        capacity: d.capacity,
        vehicle_classes: d.vehicle_classes,
    }
}

/// A city to load: districts (code, name) and points.
#[derive(Debug, Clone)]
pub struct Seed {
    /// Districts to create when missing.
    pub districts: Vec<(String, String)>,
    /// Points to create when their code is unused.
    pub points: Vec<PointDraft>,
    /// Tariffs to publish when no tariff of the same name exists.
    pub tariffs: Vec<iparking_mobile_api::TariffSpec>,
}

/// What a seed did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedReport {
    /// Districts created.
    pub districts_created: usize,
    /// Points created.
    pub points_created: u64,
    /// Points already present (a seed can be run again safely).
    pub points_present: usize,
    /// Tariffs published.
    pub tariffs_published: usize,
}

/// Loads a seed: missing districts and points are created, present ones are left alone.
pub async fn load_seed(store: &dyn Store, seed: Seed, now: DateTime<Utc>) -> anyhow::Result<SeedReport> {
    let present: HashSet<String> = store.districts().await?.into_iter().map(|d| d.code).collect();
    let mut districts_created = 0;
    for (code, name) in &seed.districts {
        if !present.contains(code) {
            store.create_district(code, name, now).await?;
            districts_created += 1;
        }
    }
    let existing: HashSet<String> = store.point_codes().await?.into_iter().collect();
    let (present_points, new_points): (Vec<PointDraft>, Vec<PointDraft>) =
        seed.points.into_iter().partition(|p| existing.contains(&p.code));
    let report =
        import_drafts(store, new_points.into_iter().map(Ok).collect(), ImportMode::AllOrNothing, None, now).await?;
    if let Some(e) = report.rejected.first() {
        anyhow::bail!("seed data rejected at line {}: {}", e.line, e.message);
    }
    let existing_tariffs: HashSet<String> = store.tariffs().await?.into_iter().map(|t| t.name).collect();
    let mut tariffs_published = 0;
    for spec in seed.tariffs.iter().filter(|t| !existing_tariffs.contains(&t.name)) {
        let tariff = Tariff::from_spec(0, spec).map_err(|e| anyhow::anyhow!("seed tariff {}: {e}", spec.name))?;
        if let Err(ids) = store.publish_tariff(&tariff, None, now).await? {
            anyhow::bail!("seed tariff {} overlaps published tariff(s) {ids:?}", spec.name);
        }
        tariffs_published += 1;
    }
    Ok(SeedReport {
        districts_created,
        points_created: report.imported,
        points_present: present_points.len(),
        tariffs_published,
    })
}
