// Vietnamese plates as a warden types them: upper-case, separators as on the plate
// (`30A-123.45`, `29B1-123.45`, `30E-1234`, `80NG-123.45`). The server normalises and
// validates again (`30A12345`).

/** Upper-case, no separators: what the API compares. */
export function normalise(text) {
  return text.toUpperCase().replace(/[^A-Z0-9]/g, "");
}

/** The plate written as on the plate, as far as it is typed. */
export function formatPlate(text) {
  const n = normalise(text).slice(0, 10);
  const m = n.match(/^(\d{0,2})([A-Z]{0,2})(\d*)$/);
  if (!m || m[1].length < 2 || !m[2]) return n;
  const [, province, letters, digits] = m;
  let series = province + letters;
  let num = digits;
  // A sixth digit: the series' own digit (29B1-123.45).
  if (num.length === 6) {
    series += num[0];
    num = num.slice(1);
  }
  if (!num) return series;
  if (num.length === 5) return `${series}-${num.slice(0, 3)}.${num.slice(3)}`;
  return `${series}-${num}`;
}
