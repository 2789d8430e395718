// curl: RAII wrappers around libcurl's easy interface (no mail knowledge here).
//
// Promises:
// - curl_global_init runs exactly once per process (global_init(), called by easy's ctor).
// - easy and slist are move-only; destructors are noexcept and release the handle.
// - A failing setup call (curl_easy_init, curl_easy_setopt, curl_slist_append) throws
//   mx::curl::error naming the C function and the option; a failing transfer is a value
//   (perform() returns the CURLcode) because network failures are expected outcomes.
// - escape() percent-encodes for application/x-www-form-urlencoded bodies.
// Security: callers install callbacks; none of them may let an exception escape into libcurl
// (wrap bodies in try/catch and return the abort value).
#pragma once

#include <curl/curl.h>

#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace mx::curl {

class error : public std::runtime_error {
  public:
    error(const char* function, CURLcode rc, const std::string& detail = {});
    error(const char* function, const std::string& detail);
    const char* function() const noexcept { return function_; }
    CURLcode code() const noexcept { return rc_; }

  private:
    const char* function_;
    CURLcode rc_ = CURLE_OK;
};

void global_init();

class slist {
  public:
    slist() = default;
    slist(slist&& o) noexcept : head_(std::exchange(o.head_, nullptr)) {}
    slist& operator=(slist&& o) noexcept;
    slist(const slist&) = delete;
    slist& operator=(const slist&) = delete;
    ~slist() noexcept;

    void append(const std::string& s);
    curl_slist* get() const noexcept { return head_; }
    bool empty() const noexcept { return head_ == nullptr; }

  private:
    curl_slist* head_ = nullptr;
};

class easy {
  public:
    easy();
    easy(easy&& o) noexcept;
    easy& operator=(easy&& o) noexcept;
    easy(const easy&) = delete;
    easy& operator=(const easy&) = delete;
    ~easy() noexcept;

    CURL* get() const noexcept { return h_; }

    // Typed setopt; `name` names the option in the error ("CURLOPT_URL").
    void set(CURLoption opt, const char* name, long v);
    void set(CURLoption opt, const char* name, const std::string& v);
    void set(CURLoption opt, const char* name, const char* v);
    void set(CURLoption opt, const char* name, void* v);
    void set(CURLoption opt, const char* name, const slist& v);
    template <typename Fn>
    void set_callback(CURLoption opt, const char* name, Fn* fn) {
        check(curl_easy_setopt(h_, opt, fn), name);
    }

    // Runs the transfer; the result is a value. error_buffer() has curl's detail text.
    CURLcode perform() noexcept;
    const char* error_buffer() const noexcept { return errbuf_; }
    long response_code() const noexcept;
    // "<curl_easy_strerror>: <detail>" for messages.
    std::string describe(CURLcode rc) const;
    std::string escape(std::string_view s) const;

  private:
    void check(CURLcode rc, const char* name);
    CURL* h_ = nullptr;
    char errbuf_[CURL_ERROR_SIZE] = {};
};

}  // namespace mx::curl
