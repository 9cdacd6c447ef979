// See http.hpp.
#include "src/wire/http.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>

namespace zyolo {
namespace {

// RFC 9110's tchar: what a method or a header name is made of.
bool is_tchar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}
bool is_token(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), is_tchar);
}

// Case-insensitive equality of ASCII text.
bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Whether the comma-separated header value lists `option` ("close", "keep-alive").
bool lists(std::string_view value, std::string_view option) {
  while (!value.empty()) {
    const auto comma = value.find(',');
    if (iequals(trim(value.substr(0, comma)), option)) return true;
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  return false;
}

HttpParsed malformed(std::string_view why) {
  return {HttpParse::Malformed, {}, why};
}

}  // namespace

HttpParsed parse_http_request(std::string_view buffer, std::size_t max_head) {
  // RFC 9112 2.2: a server SHOULD ignore at least one empty line before the request line.
  std::size_t start = 0;
  while (buffer.substr(start).starts_with("\r\n")) start += 2;
  const auto end = buffer.find("\r\n\r\n", start);
  if (end == std::string_view::npos || end + 4 > max_head) {
    if (buffer.size() >= max_head) return {HttpParse::TooLarge, {}, "request head too large"};
    return {};  // Incomplete
  }
  std::string_view head = buffer.substr(start, end + 2 - start);  // each line keeps its CRLF
  HttpParsed out{HttpParse::Complete, {}, {}};
  out.request.length = end + 4;

  // The request line: method SP target SP HTTP-version.
  const auto line_end = head.find("\r\n");
  const std::string_view line = head.substr(0, line_end);
  head.remove_prefix(line_end + 2);
  const auto sp1 = line.find(' ');
  const auto sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos)
    return malformed("the request line is not METHOD TARGET VERSION");
  const std::string_view method = line.substr(0, sp1), target = line.substr(sp1 + 1, sp2 - sp1 - 1),
                         version = line.substr(sp2 + 1);
  if (!is_token(method)) return malformed("the method is not a token");
  if (target.empty() || target.front() != '/' ||
      std::any_of(target.begin(), target.end(), [](char c) { return c <= ' ' || c == 0x7f; }))
    return malformed("the target is not an absolute path");
  bool keep_alive = true;
  if (version == "HTTP/1.0")
    keep_alive = false;
  else if (version != "HTTP/1.1")
    return malformed("the version is not HTTP/1.0 or HTTP/1.1");

  // Header fields: name ":" OWS value OWS; no obsolete line folding.
  bool close = false, keep = false;
  while (!head.empty()) {
    const auto eol = head.find("\r\n");
    const std::string_view field = head.substr(0, eol);
    head.remove_prefix(eol + 2);
    const auto colon = field.find(':');
    if (colon == std::string_view::npos || !is_token(field.substr(0, colon)))
      return malformed("a header line is not NAME: VALUE");
    const std::string_view name = field.substr(0, colon), value = trim(field.substr(colon + 1));
    if (std::any_of(value.begin(), value.end(), [](char c) {
          return (static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f;
        }))
      return malformed("a header value holds a control character");
    if (iequals(name, "Connection")) {
      close = close || lists(value, "close");
      keep = keep || lists(value, "keep-alive");
    } else if (iequals(name, "Transfer-Encoding") ||
               (iequals(name, "Content-Length") && value != "0")) {
      out.request.has_body = true;
    }
  }
  out.request.method = method;
  out.request.path = target.substr(0, target.find('?'));
  out.request.keep_alive = !close && (keep_alive || keep);
  return out;
}

std::string_view http_reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 431:
      return "Request Header Fields Too Large";
    case 503:
      return "Service Unavailable";
    default:
      return "Unknown";
  }
}

std::string http_response(int status, std::string_view content_type, std::string_view body,
                          bool keep_alive, bool head_only) {
  std::string out = fmt::format(
      "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{}{}\r\n", status,
      http_reason(status), content_type, body.size(), keep_alive ? "" : "Connection: close\r\n",
      status == 405 ? "Allow: GET, HEAD\r\n" : "");
  if (!head_only) out += body;
  return out;
}

}  // namespace zyolo
