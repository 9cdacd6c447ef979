// The little of HTTP/1.1 that a metrics endpoint needs (RFC 9112): reading a request's head out
// of the bytes a connection has sent so far, and writing a whole response. The metrics actor
// (threads/metrics.cpp) is the only user; these functions hold no state and never throw, so the
// fuzz target can feed them anything.
//
// A request is read as a head: the request line, header lines, and an empty line, each ended by
// CRLF. A head that announces a body is flagged (GET and HEAD carry none); any line that is not
// what RFC 9112 allows makes the request malformed.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace zyolo {

struct HttpRequest {
  std::string_view method;  // "GET", "HEAD", ... (a token)
  std::string_view path;    // the target without its query: "/metrics"
  bool keep_alive = true;   // HTTP/1.1 without "Connection: close", or 1.0 with "keep-alive"
  std::size_t length = 0;   // bytes of the buffer the head took, its last CRLF included
  // It announces a body (Content-Length above 0, or Transfer-Encoding), which the endpoint
  // does not read: the caller answers (405 or 400) and closes.
  bool has_body = false;
};

enum class HttpParse {
  Incomplete,  // no empty line yet, and the head is still within the cap: wait for more
  Complete,    // a request: HttpParsed::request
  TooLarge,    // no end of the head within max_head bytes: answer 431 and close
  Malformed,   // not an HTTP/1.x request head: answer 400 and close (why says what)
};

struct HttpParsed {
  HttpParse status = HttpParse::Incomplete;
  HttpRequest request;   // Complete: views into the buffer
  std::string_view why;  // Malformed: static text
};

// Reads the first request in `buffer`, whose head may be at most `max_head` bytes long.
HttpParsed parse_http_request(std::string_view buffer, std::size_t max_head);

// A whole response: status line, Content-Type, Content-Length, Connection (close when
// !keep_alive), an empty line, and the body unless `head_only` (a HEAD request).
std::string http_response(int status, std::string_view content_type, std::string_view body,
                          bool keep_alive, bool head_only = false);

// The reason phrase of the statuses the endpoint answers with ("OK", "Not Found", ...).
std::string_view http_reason(int status);

}  // namespace zyolo
