// A QR code as SVG squares (shared), from the vendored generator (qrcode-generator, MIT):
// a receipt's public page, for a phone's camera or the scanner of whoever checks it.
import qrcode from "./vendor/qrcode-generator/qrcode.mjs";

const NS = "http://www.w3.org/2000/svg";

/** An SVG of `text`'s QR code (error correction M, a 4-module quiet zone), labelled `label`. */
export function qrSvg(text, label) {
  const qr = qrcode(0, "M");
  qr.addData(text);
  qr.make();
  const n = qr.getModuleCount();
  const quiet = 4;
  const size = n + quiet * 2;
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("viewBox", `0 0 ${size} ${size}`);
  svg.setAttribute("class", "qr");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", label);
  svg.setAttribute("shape-rendering", "crispEdges");
  const bg = document.createElementNS(NS, "rect");
  bg.setAttribute("width", String(size));
  bg.setAttribute("height", String(size));
  bg.setAttribute("fill", "#fff");
  svg.append(bg);
  for (let r = 0; r < n; r++) {
    for (let c = 0; c < n; c++) {
      if (!qr.isDark(r, c)) continue;
      const m = document.createElementNS(NS, "rect");
      m.setAttribute("x", String(c + quiet));
      m.setAttribute("y", String(r + quiet));
      m.setAttribute("width", "1");
      m.setAttribute("height", "1");
      svg.append(m);
    }
  }
  return svg;
}
