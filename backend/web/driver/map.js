// The map of the points: Leaflet (vendored from npm, loaded only when the map is opened),
// tiles from the operator's server (IPARKING_MAP_TILES; OpenStreetMap by default, with its
// attribution). Without tiles (offline, tests) the markers still show, and the list works.
import { t } from "./i18n.js";

let loading = null;

function leaflet() {
  if (window.L) return Promise.resolve(window.L);
  if (loading) return loading;
  const base = new URL("./vendor/leaflet/", import.meta.url);
  loading = new Promise((resolve, reject) => {
    const css = document.createElement("link");
    css.rel = "stylesheet";
    css.href = new URL("leaflet.css", base).href;
    document.head.append(css);
    const js = document.createElement("script");
    js.src = new URL("leaflet.js", base).href;
    js.onload = () => resolve(window.L);
    js.onerror = () => reject(new Error("leaflet"));
    document.head.append(js);
  });
  return loading;
}

const COLOURS = { "free-many": "#1e7d32", "free-few": "#8a5300", "free-full": "#b3261e", "free-none": "#4f5b69" };

/**
 * Draws `points` ({point, distance_m, cls}) around `center` in `el`; a marker's popup links
 * to its point's page. Returns the Leaflet map.
 */
export async function drawMap(el, center, points) {
  const L = await leaflet();
  const map = L.map(el, { zoomControl: true, attributionControl: true }).setView([center.lat, center.lon], 16);
  const tiles = document.querySelector('meta[name="iparking-tiles"]')?.content || "";
  if (tiles && tiles !== "none") {
    const osm = tiles.includes("openstreetmap.org");
    L.tileLayer(tiles, {
      maxZoom: 19,
      attribution: osm ? '&copy; <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a>' : "",
    }).addTo(map);
  }
  for (const x of points) {
    const p = x.point;
    const marker = L.circleMarker([p.lat, p.lon], {
      radius: 11, weight: 2, color: "#fff", fillColor: COLOURS[x.cls] || COLOURS["free-none"], fillOpacity: 0.95,
    }).addTo(map);
    const link = document.createElement("a");
    link.href = "#/points/" + encodeURIComponent(p.code);
    link.textContent = `${p.code}: ${p.name}`;
    const free = document.createElement("div");
    free.textContent = x.free;
    const box = document.createElement("div");
    box.append(link, free);
    marker.bindPopup(box);
    marker.bindTooltip(p.code);
    const path = marker.getElement && marker.getElement();
    if (path) {
      path.setAttribute("role", "img");
      path.setAttribute("aria-label", `${p.code}: ${x.free}`);
      path.dataset.code = p.code;
    }
  }
  el.setAttribute("aria-label", t("map_label"));
  return map;
}
