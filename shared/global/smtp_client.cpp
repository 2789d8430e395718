#include "global/smtp_client.hpp"

#include <algorithm>
#include <cstring>

#include "global/mail_compose.hpp"
#include "global/mail_header.hpp"
#include "util/curl.hpp"

namespace mx {
namespace {

struct upload_state {
    std::string_view data;
    std::size_t offset = 0;
};

size_t discard_cb(char*, size_t size, size_t nitems, void*) {
    return size * nitems;
}

size_t read_cb(char* buf, size_t size, size_t nitems, void* userp) {
    auto* st = static_cast<upload_state*>(userp);
    std::size_t room = size * nitems;
    std::size_t n = std::min(room, st->data.size() - st->offset);
    std::memcpy(buf, st->data.data() + st->offset, n);
    st->offset += n;
    return n;
}

// Collects a masked transcript. AUTH payloads (the command's initial response and every
// client line while the server answers 334) are replaced by "***".
struct debug_state {
    std::vector<transcript_line> lines;
    bool in_auth = false;
    bool saw_auth_capability = false;
    std::string last_reply;  // the server's last complete reply (all lines)
    std::string pending_reply;
    std::size_t bytes = 0;
};

void add_line(debug_state& st, char dir, std::string_view text) {
    if (st.bytes > 256 * 1024) return;  // a hostile server cannot make us hoard memory
    std::string safe = mail::single_line(text, 512);
    st.bytes += safe.size();
    st.lines.push_back({dir, std::move(safe)});
}

void on_server_line(debug_state& st, std::string_view line) {
    add_line(st, '<', line);
    if (line.size() >= 4 && mail::iequals(line.substr(4, 4), "AUTH")) st.saw_auth_capability = true;
    st.pending_reply += std::string(mail::single_line(line, 512));
    if (line.size() >= 4 && line[3] == '-') {
        st.pending_reply += " / ";
        return;
    }
    st.last_reply = std::move(st.pending_reply);
    st.pending_reply.clear();
    if (line.rfind("334", 0) != 0) st.in_auth = false;
}

void on_client_line(debug_state& st, std::string_view line) {
    if (line.size() >= 5 && mail::iequals(line.substr(0, 5), "AUTH ")) {
        // Keep "AUTH MECH", mask any initial response.
        auto sp = line.find(' ', 5);
        std::string shown(line.substr(0, sp));
        if (sp != std::string_view::npos) shown += " ***";
        add_line(st, '>', shown);
        st.in_auth = true;
        return;
    }
    if (st.in_auth) {
        add_line(st, '>', "***");
        return;
    }
    add_line(st, '>', line);
}

int debug_cb(CURL*, curl_infotype type, char* data, size_t size, void* userp) {
    try {
        auto* st = static_cast<debug_state*>(userp);
        std::string_view text(data, size);
        if (type != CURLINFO_TEXT && type != CURLINFO_HEADER_IN && type != CURLINFO_HEADER_OUT)
            return 0;  // message data and TLS records stay out of the transcript
        std::size_t pos = 0;
        while (pos < text.size()) {
            auto nl = text.find('\n', pos);
            auto line =
                text.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
            pos = nl == std::string_view::npos ? text.size() : nl + 1;
            while (!line.empty() && (line.back() == '\r' || line.back() == '\n'))
                line.remove_suffix(1);
            if (line.empty()) continue;
            if (type == CURLINFO_HEADER_IN)
                on_server_line(*st, line);
            else if (type == CURLINFO_HEADER_OUT)
                on_client_line(*st, line);
            else if (!st->in_auth)  // libcurl's own text never contains the secret, but be sure
                add_line(*st, '*', line);
        }
    } catch (...) {
        // Never let an exception unwind through libcurl; losing a transcript line is harmless.
    }
    return 0;
}

smtp_result classify(CURLcode rc, long code, const debug_state& dbg, const curl::easy& h) {
    smtp_result r;
    r.curl_code = rc;
    r.smtp_code = code;
    r.detail = h.describe(rc);
    if (!dbg.last_reply.empty()) r.detail += "; server said: " + dbg.last_reply;
    switch (rc) {
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_CONNECT:
        case CURLE_OPERATION_TIMEDOUT:
        case CURLE_GOT_NOTHING:
        case CURLE_RECV_ERROR:
        case CURLE_SEND_ERROR:
        case CURLE_PARTIAL_FILE:
            r.kind = smtp_result::failure::connect;
            break;
        case CURLE_USE_SSL_FAILED:
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CACERT_BADFILE:
        case CURLE_SSL_CERTPROBLEM:
        case CURLE_SSL_CIPHER:
            r.kind = smtp_result::failure::tls;
            break;
        case CURLE_LOGIN_DENIED:
        case CURLE_AUTH_ERROR:
            r.kind = smtp_result::failure::auth;
            break;
        default:
            r.kind = smtp_result::failure::other;
    }
    // A reply code says more than the transport error libcurl maps it to.
    if (code == 530 || code == 534 || code == 535 || code == 538 || code == 454)
        r.kind = dbg.in_auth || code != 454 ? smtp_result::failure::auth : r.kind;
    else if (code >= 500 && code < 600)
        r.kind = smtp_result::failure::permanent;
    else if (code >= 400 && code < 500)
        r.kind = smtp_result::failure::temporary;
    if (rc == CURLE_USE_SSL_FAILED) r.kind = smtp_result::failure::tls;
    return r;
}

}  // namespace

std::string_view to_string(smtp_result::failure f) {
    switch (f) {
        case smtp_result::failure::none:
            return "ok";
        case smtp_result::failure::config:
            return "configuration";
        case smtp_result::failure::connect:
            return "connection";
        case smtp_result::failure::tls:
            return "tls";
        case smtp_result::failure::auth:
            return "authentication";
        case smtp_result::failure::temporary:
            return "temporary rejection";
        case smtp_result::failure::permanent:
            return "permanent rejection";
        case smtp_result::failure::other:
            return "error";
    }
    return "error";
}

smtp_result smtp_client::send(const smtp_credentials& cred, const smtp_envelope& env,
                              std::string_view message, std::vector<transcript_line>* transcript) {
    return run(cred, &env, message, transcript);
}

smtp_result smtp_client::probe(const smtp_credentials& cred,
                               std::vector<transcript_line>* transcript) {
    return run(cred, nullptr, {}, transcript);
}

smtp_result smtp_client::run(const smtp_credentials& cred, const smtp_envelope* env,
                             std::string_view message, std::vector<transcript_line>* transcript) {
    if (cred.type != smtp_credentials::kind::none && route_.security == tls_mode::none &&
        !route_.allow_plaintext_auth) {
        smtp_result r;
        r.kind = smtp_result::failure::config;
        r.detail = "refusing to send credentials over an unencrypted connection to " + route_.host +
                   " (set smtp.security=starttls or tls, or smtp.allow_plaintext_auth=true)";
        return r;
    }
    if (env) {
        if (env->rcpt_to.empty()) return {smtp_result::failure::config, 0, 0, "no recipients"};
        for (const auto& a : env->rcpt_to)
            if (!mail::is_sendable_address(a))
                return {smtp_result::failure::permanent, 0, 0,
                        "invalid recipient address: " + mail::single_line(a, 100)};
        if (!env->mail_from.empty() && !mail::is_sendable_address(env->mail_from))
            return {smtp_result::failure::config, 0, 0,
                    "invalid sender address: " + mail::single_line(env->mail_from, 100)};
    }

    curl::easy h;
    debug_state dbg;
    upload_state up{message, 0};
    curl::slist rcpts;
    h.set(CURLOPT_URL, "CURLOPT_URL", route_.url(ehlo_));
    h.set(CURLOPT_CONNECTTIMEOUT, "CURLOPT_CONNECTTIMEOUT",
          static_cast<long>(route_.timeout_seconds));
    h.set(CURLOPT_SERVER_RESPONSE_TIMEOUT, "CURLOPT_SERVER_RESPONSE_TIMEOUT",
          static_cast<long>(route_.timeout_seconds));
    h.set(CURLOPT_LOW_SPEED_LIMIT, "CURLOPT_LOW_SPEED_LIMIT", 1L);
    h.set(CURLOPT_LOW_SPEED_TIME, "CURLOPT_LOW_SPEED_TIME",
          static_cast<long>(route_.timeout_seconds));
    h.set_callback(CURLOPT_WRITEFUNCTION, "CURLOPT_WRITEFUNCTION", &discard_cb);
    h.set(CURLOPT_VERBOSE, "CURLOPT_VERBOSE", 1L);  // only into debug_cb, which masks
    h.set_callback(CURLOPT_DEBUGFUNCTION, "CURLOPT_DEBUGFUNCTION", &debug_cb);
    h.set(CURLOPT_DEBUGDATA, "CURLOPT_DEBUGDATA", static_cast<void*>(&dbg));
    if (route_.security == tls_mode::starttls)
        h.set(CURLOPT_USE_SSL, "CURLOPT_USE_SSL", static_cast<long>(CURLUSESSL_ALL));
    if (!route_.ca_file.empty()) h.set(CURLOPT_CAINFO, "CURLOPT_CAINFO", route_.ca_file);
    h.set(CURLOPT_SSL_VERIFYPEER, "CURLOPT_SSL_VERIFYPEER", route_.verify_peer ? 1L : 0L);
    h.set(CURLOPT_SSL_VERIFYHOST, "CURLOPT_SSL_VERIFYHOST", route_.verify_peer ? 2L : 0L);

    switch (cred.type) {
        case smtp_credentials::kind::none:
            break;
        case smtp_credentials::kind::password:
            h.set(CURLOPT_USERNAME, "CURLOPT_USERNAME", cred.username);
            h.set(CURLOPT_PASSWORD, "CURLOPT_PASSWORD", cred.secret);
            switch (route_.mechanism) {
                case sasl_mechanism::automatic:
                    break;
                case sasl_mechanism::plain:
                    h.set(CURLOPT_LOGIN_OPTIONS, "CURLOPT_LOGIN_OPTIONS", "AUTH=PLAIN");
                    break;
                case sasl_mechanism::login:
                    h.set(CURLOPT_LOGIN_OPTIONS, "CURLOPT_LOGIN_OPTIONS", "AUTH=LOGIN");
                    break;
                case sasl_mechanism::cram_md5:
                    h.set(CURLOPT_LOGIN_OPTIONS, "CURLOPT_LOGIN_OPTIONS", "AUTH=CRAM-MD5");
                    break;
            }
            break;
        case smtp_credentials::kind::bearer:
            // Debian's curl prefers OAUTHBEARER when both are offered: force XOAUTH2.
            h.set(CURLOPT_USERNAME, "CURLOPT_USERNAME", cred.username);
            h.set(CURLOPT_XOAUTH2_BEARER, "CURLOPT_XOAUTH2_BEARER", cred.secret);
            h.set(CURLOPT_LOGIN_OPTIONS, "CURLOPT_LOGIN_OPTIONS", "AUTH=XOAUTH2");
            break;
    }

    if (env) {
        h.set(CURLOPT_MAIL_FROM, "CURLOPT_MAIL_FROM", "<" + env->mail_from + ">");
        for (const auto& a : env->rcpt_to) rcpts.append("<" + a + ">");
        h.set(CURLOPT_MAIL_RCPT, "CURLOPT_MAIL_RCPT", rcpts);
        h.set(CURLOPT_UPLOAD, "CURLOPT_UPLOAD", 1L);
        h.set_callback(CURLOPT_READFUNCTION, "CURLOPT_READFUNCTION", &read_cb);
        h.set(CURLOPT_READDATA, "CURLOPT_READDATA", static_cast<void*>(&up));
    } else {
        h.set(CURLOPT_CUSTOMREQUEST, "CURLOPT_CUSTOMREQUEST", "NOOP");
        h.set(CURLOPT_NOBODY, "CURLOPT_NOBODY", 1L);
    }

    CURLcode rc = h.perform();
    long code = h.response_code();
    smtp_result r;
    if (rc == CURLE_OK) {
        r.smtp_code = code;
        r.detail = dbg.last_reply;
        if (!env && cred.type != smtp_credentials::kind::none && !dbg.saw_auth_capability) {
            // libcurl silently skips AUTH when the server does not offer it.
            r.kind = smtp_result::failure::auth;
            r.detail = "the server did not offer AUTH (credentials were not used); last reply: " +
                       dbg.last_reply;
        }
    } else {
        r = classify(rc, code, dbg, h);
    }
    if (transcript) *transcript = std::move(dbg.lines);
    return r;
}

}  // namespace mx
