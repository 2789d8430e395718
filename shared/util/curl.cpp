#include "util/curl.hpp"

#include <mutex>

namespace mx::curl {

error::error(const char* function, CURLcode rc, const std::string& detail)
    : std::runtime_error(std::string(function) + ": " + curl_easy_strerror(rc) +
                         (detail.empty() ? std::string() : " (" + detail + ")"))
    , function_(function)
    , rc_(rc) {}

error::error(const char* function, const std::string& detail)
    : std::runtime_error(std::string(function) + ": " + detail), function_(function) {}

void global_init() {
    static std::once_flag once;
    std::call_once(once, [] {
        if (auto rc = curl_global_init(CURL_GLOBAL_DEFAULT); rc != CURLE_OK)
            throw error("curl_global_init", rc);
    });
}

slist& slist::operator=(slist&& o) noexcept {
    if (this != &o) {
        if (head_) curl_slist_free_all(head_);
        head_ = std::exchange(o.head_, nullptr);
    }
    return *this;
}

slist::~slist() noexcept {
    if (head_) curl_slist_free_all(head_);
}

void slist::append(const std::string& s) {
    auto* n = curl_slist_append(head_, s.c_str());
    if (!n) throw error("curl_slist_append", "out of memory");
    head_ = n;
}

easy::easy() {
    global_init();
    h_ = curl_easy_init();
    if (!h_) throw error("curl_easy_init", "returned NULL");
    check(curl_easy_setopt(h_, CURLOPT_ERRORBUFFER, errbuf_), "CURLOPT_ERRORBUFFER");
    // Threads: no SIGALRM-based DNS timeouts.
    check(curl_easy_setopt(h_, CURLOPT_NOSIGNAL, 1L), "CURLOPT_NOSIGNAL");
}

easy::easy(easy&& o) noexcept : h_(std::exchange(o.h_, nullptr)) {
    if (h_) curl_easy_setopt(h_, CURLOPT_ERRORBUFFER, errbuf_);
}

easy& easy::operator=(easy&& o) noexcept {
    if (this != &o) {
        if (h_) curl_easy_cleanup(h_);
        h_ = std::exchange(o.h_, nullptr);
        if (h_) curl_easy_setopt(h_, CURLOPT_ERRORBUFFER, errbuf_);
    }
    return *this;
}

easy::~easy() noexcept {
    if (h_) curl_easy_cleanup(h_);
}

void easy::check(CURLcode rc, const char* name) {
    if (rc != CURLE_OK) throw error("curl_easy_setopt", rc, name);
}

void easy::set(CURLoption opt, const char* name, long v) {
    check(curl_easy_setopt(h_, opt, v), name);
}
void easy::set(CURLoption opt, const char* name, const std::string& v) {
    check(curl_easy_setopt(h_, opt, v.c_str()), name);  // libcurl copies strings
}
void easy::set(CURLoption opt, const char* name, const char* v) {
    check(curl_easy_setopt(h_, opt, v), name);
}
void easy::set(CURLoption opt, const char* name, void* v) {
    check(curl_easy_setopt(h_, opt, v), name);
}
void easy::set(CURLoption opt, const char* name, const slist& v) {
    check(curl_easy_setopt(h_, opt, v.get()), name);
}

CURLcode easy::perform() noexcept {
    errbuf_[0] = '\0';
    return curl_easy_perform(h_);
}

long easy::response_code() const noexcept {
    long code = 0;
    curl_easy_getinfo(h_, CURLINFO_RESPONSE_CODE, &code);
    return code;
}

std::string easy::describe(CURLcode rc) const {
    std::string s = curl_easy_strerror(rc);
    if (errbuf_[0]) s += std::string(": ") + errbuf_;
    return s;
}

std::string easy::escape(std::string_view s) const {
    char* e = curl_easy_escape(h_, s.data(), static_cast<int>(s.size()));
    if (!e) throw error("curl_easy_escape", "out of memory");
    std::string out(e);
    curl_free(e);
    return out;
}

}  // namespace mx::curl
