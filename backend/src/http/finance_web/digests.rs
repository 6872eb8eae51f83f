//! The ledger's daily digests, published (issue 34): `/public/ledger/digests` for people,
//! `.json` and `.csv` for machines. Each is a Hanoi day's last hash in the ledger's chain and
//! its totals: anyone who keeps a copy can later prove the ledger was not rewritten
//! (`iparking ledger verify --digests`, docs/open-data.md).

use axum::{
    extract::{ConnectInfo, Path, State},
    http::{HeaderMap, HeaderValue, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use maud::html;
use serde::Serialize;

use super::{
    labels::{Lang, money},
    public::{open_data_headers, page},
    request::Ctx,
};
use crate::{
    app::ledger_chain::{public_digests, public_export},
    http::{AppState, Peer, csv::csv_response},
    store::chain::DigestRow,
};

/// Days shown and downloaded: the last ten years' worth.
const MAX_DAYS: i64 = 3_660;

/// The JSON download.
#[derive(Serialize)]
struct DigestsFile {
    /// How the hashes are made.
    about: &'static str,
    /// Latest first.
    digests: Vec<DigestRow>,
}

/// `GET /public/ledger/digests`: the digests, latest first, and how to check a day.
pub async fn digests_page(State(app): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let ctx = Ctx::new(&headers, &uri);
    let title = ctx.t("Dấu vân tay sổ cái hằng ngày", "Daily ledger digests");
    let digests = match public_digests(&app, MAX_DAYS).await {
        Ok(d) => d,
        Err(e) => return e.into_response(),
    };
    let body = html! {
        h1 { (title) }
        p { (ctx.t(
            "Mỗi giao dịch của sổ cái có một mã băm SHA-256 nối với mã của giao dịch trước nó. \
             Cuối mỗi ngày (giờ Hà Nội), mã băm cuối cùng của ngày được công bố ở đây. \
             Hãy lưu một bản: nếu sau này có ai sửa hay xoá một giao dịch, chuỗi sẽ không còn khớp với mã đã công bố.",
            "Every ledger transaction has a SHA-256 hash chained to the one before it. At the end of each \
             Hanoi day, the day's last hash is published here. Keep a copy: if anyone later changes or deletes \
             a transaction, the chain no longer gives the published hash."
        )) }
        p {
            (ctx.t("Tải về", "Download")) ": "
            a href="/public/ledger/digests.json" { "JSON" } " · "
            a href="/public/ledger/digests.csv" download { "CSV" }
        }
        @if digests.is_empty() {
            p class="empty" { (ctx.t("Chưa có ngày nào kết thúc.", "No day has ended yet.")) }
        } @else {
            div class="scroll" tabindex="0" role="region" aria-label=(title) {
                table id="digests" {
                    thead { tr {
                        th scope="col" { (ctx.t("Ngày", "Day")) }
                        th scope="col" class="num" { (ctx.t("Giao dịch", "Transactions")) }
                        th scope="col" class="num" { (ctx.t("Tiền luân chuyển", "Money moved")) }
                        th scope="col" { (ctx.t("Vị trí", "Places")) }
                        th scope="col" { (ctx.t("Mã băm cuối ngày", "The day's last hash")) }
                    } }
                    tbody {
                        @for d in &digests {
                            tr {
                                th scope="row" {
                                    a href={ "/public/ledger/days/" (d.day) ".txt" } download
                                        title=(ctx.t("Bản xuất của ngày", "The day's export")) { (d.day) }
                                }
                                td class="num" { (d.transactions) }
                                td class="num" { (money(d.moved)) }
                                td { @if d.to_seq >= d.from_seq { (d.from_seq) "–" (d.to_seq) } @else { "—" } }
                                td { code class="hash" { (d.last_hash) } }
                            }
                        }
                    }
                }
            }
        }
        h2 { (ctx.t("Tự kiểm tra một ngày", "Check a day yourself")) }
        p { a href="/public/ledger/ledger-rehash.py" download { (ctx.t("Tải tập lệnh ledger-rehash.py", "Download the script ledger-rehash.py")) } }
        p { (ctx.t(
            "Bấm vào một ngày để tải bản xuất của ngày đó (không có dữ liệu cá nhân). \
             Tập lệnh Python 40 dòng docs/ledger-rehash.py tính lại mọi mã băm và mã cuối ngày để so với bảng trên: \
             python3 ledger-rehash.py NGÀY.txt digests.json",
            "Tap a day to download its export (no personal data). The 40-line Python script \
             ledger-rehash.py re-computes every hash and the day's last one, to compare with the table above: \
             python3 ledger-rehash.py DAY.txt digests.json"
        )) }
    };
    ctx.html(
        StatusCode::OK,
        page(&ctx, &app.settings.data_license_url, if ctx.lang == Lang::Vi { "Sổ cái" } else { "Ledger" }, body),
    )
}

/// `GET /public/ledger/digests.json`.
pub async fn digests_json(State(app): State<AppState>) -> Response {
    match public_digests(&app, MAX_DAYS).await {
        Ok(digests) => open_data_headers(
            &app,
            axum::Json(DigestsFile {
                about: "Hanoi days' last hashes of the iParking ledger's SHA-256 chain; see docs/open-data.md",
                digests,
            })
            .into_response(),
        ),
        Err(e) => e.into_response(),
    }
}

/// `GET /public/ledger/digests.csv` (UTF-8 with a BOM).
pub async fn digests_csv(State(app): State<AppState>) -> Response {
    match public_digests(&app, MAX_DAYS).await {
        Ok(digests) => {
            let mut out = String::from("\u{feff}day,from_seq,to_seq,transactions,moved_vnd,last_hash\r\n");
            for d in digests {
                out.push_str(&format!(
                    "{},{},{},{},{},{}\r\n",
                    d.day, d.from_seq, d.to_seq, d.transactions, d.moved, d.last_hash
                ));
            }
            open_data_headers(&app, csv_response("iparking-ledger-digests.csv", out))
        }
        Err(e) => e.into_response(),
    }
}

/// `GET /public/ledger/days/{day}.txt`: a day's export (`iparking ledger export`), for anyone;
/// 20 an hour per client address.
pub async fn day_export(
    State(app): State<AppState>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    Path(file): Path<String>,
) -> Response {
    let day = file.strip_suffix(".txt").unwrap_or("");
    match public_export(&app, peer.ip(), day).await {
        Ok(text) => {
            let mut r = open_data_headers(&app, text.into_response());
            let h = r.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
            if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"iparking-ledger-{day}.txt\"")) {
                h.insert(header::CONTENT_DISPOSITION, v);
            }
            r
        }
        Err(e) => e.into_response(),
    }
}

/// The re-hash script of `docs/`, served as it is in the source tree.
pub const REHASH_SCRIPT: &str = include_str!("../../../../docs/ledger-rehash.py");

/// `GET /public/ledger/ledger-rehash.py`: the script that re-hashes a day's export.
pub async fn rehash_script(State(app): State<AppState>) -> Response {
    let mut r = open_data_headers(&app, REHASH_SCRIPT.into_response());
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/x-python; charset=utf-8"));
    r
}
