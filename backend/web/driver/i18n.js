// Vietnamese first, English one tap away; the choice is remembered on the device.
// Every string the app shows is here, in both languages (the browser test compares the keys).

export const STRINGS = {
  vi: {
    skip: "Đến nội dung chính",
    offline: "Ngoại tuyến",
    tab_points: "Tìm chỗ",
    tab_account: "Tài khoản",
    login_title: "Đăng nhập bằng số điện thoại",
    phone: "Số điện thoại",
    phone_help: "Ví dụ 0912 345 678. Mã đăng nhập được gửi bằng SMS.",
    send_code: "Gửi mã",
    code: "Mã 6 số",
    code_sent: "Đã gửi mã tới {phone}. Mã có hiệu lực {minutes} phút.",
    log_in: "Đăng nhập",
    other_phone: "Dùng số khác",
    points_title: "Điểm đỗ xe gần bạn",
    search: "Tìm theo mã biển (HK001) hoặc tên phố",
    search_button: "Tìm",
    near_pilot: "Không lấy được vị trí của bạn: đang hiển thị các phố thí điểm ở Hoàn Kiếm.",
    near_you: "Gần vị trí của bạn.",
    free_of: "{free}/{capacity} chỗ trống",
    free_unknown: "Chưa rõ số chỗ trống",
    closed: "Đang đóng",
    metres: "{n} m",
    km: "{n} km",
    none_found: "Không tìm thấy điểm đỗ nào.",
    refreshing: "Số chỗ trống được cập nhật khi trang đang mở.",
    point_title: "Điểm {code}",
    street: "Phố",
    district: "Quận",
    capacity: "Số chỗ",
    classes: "Loại xe",
    back: "Quay lại",
    account_title: "Tài khoản",
    logged_in_as: "Đã đăng nhập.",
    log_out: "Đăng xuất",
    loading: "Đang tải…",
    error_network: "Không kết nối được máy chủ. Kiểm tra mạng rồi thử lại.",
    error_unknown: "Đã có lỗi. Vui lòng thử lại.",
    class_car: "Ô tô",
    class_motorbike: "Xe máy",
    class_minibus: "Xe khách nhỏ",
    class_large: "Xe lớn",
  },
  en: {
    skip: "Skip to the main content",
    offline: "Offline",
    tab_points: "Find parking",
    tab_account: "Account",
    login_title: "Log in with your phone number",
    phone: "Phone number",
    phone_help: "For example 0912 345 678. The login code comes by SMS.",
    send_code: "Send the code",
    code: "6-digit code",
    code_sent: "The code went to {phone}. It is valid for {minutes} minutes.",
    log_in: "Log in",
    other_phone: "Use another number",
    points_title: "Parking points near you",
    search: "Search by signboard code (HK001) or street name",
    search_button: "Search",
    near_pilot: "Your position is not available: showing the Hoàn Kiếm pilot streets.",
    near_you: "Near your position.",
    free_of: "{free} of {capacity} spaces free",
    free_unknown: "Free spaces unknown",
    closed: "Closed",
    metres: "{n} m",
    km: "{n} km",
    none_found: "No parking point found.",
    refreshing: "Free spaces refresh while this page is open.",
    point_title: "Point {code}",
    street: "Street",
    district: "District",
    capacity: "Spaces",
    classes: "Vehicles",
    back: "Back",
    account_title: "Account",
    logged_in_as: "You are logged in.",
    log_out: "Log out",
    loading: "Loading…",
    error_network: "The server cannot be reached. Check the network and try again.",
    error_unknown: "Something went wrong. Please try again.",
    class_car: "Car",
    class_motorbike: "Motorbike",
    class_minibus: "Minibus",
    class_large: "Large vehicle",
  },
};

const KEY = "iparking.lang";

export function lang() {
  const saved = localStorage.getItem(KEY);
  return saved === "en" ? "en" : "vi";
}

export function setLang(l) {
  localStorage.setItem(KEY, l === "en" ? "en" : "vi");
  document.documentElement.lang = lang();
}

/** The string `key` in the chosen language, with `{name}` filled from `vars`. */
export function t(key, vars = {}) {
  const table = STRINGS[lang()];
  const text = table[key] ?? STRINGS.vi[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => (name in vars ? String(vars[name]) : ""));
}

/** Fills every `[data-i18n]` element under `root` with its string. */
export function translate(root = document) {
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
}

/** A whole number grouped the Vietnamese or English way. */
export function number(n) {
  return new Intl.NumberFormat(lang() === "en" ? "en-GB" : "vi-VN").format(n);
}
