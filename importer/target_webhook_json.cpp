// target_webhook_json: the JSON body of a webhook delivery. The MIME walk (GMime: RFC 2047
// header decoding, transfer decoding, charset conversion to UTF-8) runs in a forked child with
// an address-space and CPU limit and a wall-clock timeout, so a hostile message can crash or
// stall only that child — never mx-importer. The child writes the finished document to a pipe.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>

#include <gmime/gmime.h>
#include <openssl/evp.h>

#include "message_parse.hpp"
#include "target_http.hpp"
#include "util/sanitizers.hpp"

namespace mx::importer {
namespace {

std::string base64(const unsigned char* p, std::size_t n) {
    std::string out(4 * ((n + 2) / 3) + 1, '\0');
    int len = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), p, static_cast<int>(n));
    out.resize(static_cast<std::size_t>(len));
    return out;
}

struct walk_state {
    nlohmann::json attachments = nlohmann::json::array();
    std::string text, html;
    bool have_text = false, have_html = false;
    std::uint64_t inline_max = 0;
    std::size_t parts = 0;
};

std::string gstr(char* s) {  // takes ownership of a g_malloc'ed string
    std::string out = s ? s : "";
    g_free(s);
    return out;
}

void add_attachment(walk_state& st, GMimeObject* obj, const char* filename) {
    nlohmann::json a;
    GMimeContentType* ct = g_mime_object_get_content_type(obj);
    a["content_type"] =
        ct ? gstr(g_mime_content_type_get_mime_type(ct)) : "application/octet-stream";
    a["filename"] = filename ? filename : "";
    const char* disp = g_mime_object_get_disposition(obj);
    a["disposition"] = disp ? disp : "";
    const char* cid = g_mime_object_get_content_id(obj);
    a["content_id"] = cid ? cid : "";
    GMimeStream* mem = g_mime_stream_mem_new();
    if (GMIME_IS_PART(obj)) {
        GMimeDataWrapper* w = g_mime_part_get_content(GMIME_PART(obj));
        if (w) g_mime_data_wrapper_write_to_stream(w, mem);
    } else if (GMIME_IS_MESSAGE_PART(obj)) {
        GMimeMessage* inner = g_mime_message_part_get_message(GMIME_MESSAGE_PART(obj));
        if (inner) g_mime_object_write_to_stream(GMIME_OBJECT(inner), nullptr, mem);
    }
    GByteArray* bytes = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(mem));
    std::uint64_t size = bytes ? bytes->len : 0;
    a["size"] = size;
    if (bytes && st.inline_max > 0 && size <= st.inline_max)
        a["content_base64"] = base64(bytes->data, bytes->len);
    g_object_unref(mem);
    st.attachments.push_back(std::move(a));
}

void visit(GMimeObject*, GMimeObject* part, gpointer ud) {
    auto& st = *static_cast<walk_state*>(ud);
    ++st.parts;
    if (GMIME_IS_MULTIPART(part)) return;  // foreach visits the children itself
    if (GMIME_IS_MESSAGE_PART(part)) {
        add_attachment(st, part, "message.eml");
        return;
    }
    if (!GMIME_IS_PART(part)) return;
    GMimePart* p = GMIME_PART(part);
    const char* filename = g_mime_part_get_filename(p);
    bool attachment = g_mime_part_is_attachment(p) || filename;
    if (!attachment && GMIME_IS_TEXT_PART(part)) {
        GMimeContentType* ct = g_mime_object_get_content_type(part);
        bool plain = g_mime_content_type_is_type(ct, "text", "plain");
        bool html = g_mime_content_type_is_type(ct, "text", "html");
        if (plain && !st.have_text) {
            st.text = gstr(g_mime_text_part_get_text(GMIME_TEXT_PART(part)));
            st.have_text = true;
            return;
        }
        if (html && !st.have_html) {
            st.html = gstr(g_mime_text_part_get_text(GMIME_TEXT_PART(part)));
            st.have_html = true;
            return;
        }
    }
    add_attachment(st, part, filename);
}

}  // namespace

nlohmann::json message_to_json(std::string_view data, std::uint64_t inline_max) {
    static std::once_flag once;
    std::call_once(once, [] { g_mime_init(); });
    nlohmann::json out;
    GMimeStream* stream = g_mime_stream_mem_new_with_buffer(data.data(), data.size());
    GMimeParser* parser = g_mime_parser_new_with_stream(stream);
    g_object_unref(stream);
    GMimeMessage* msg = g_mime_parser_construct_message(parser, nullptr);
    g_object_unref(parser);
    if (!msg) throw target_error("GMime could not parse the message");
    nlohmann::json headers = nlohmann::json::array();
    GMimeHeaderList* hl = g_mime_object_get_header_list(GMIME_OBJECT(msg));
    int n = hl ? g_mime_header_list_get_count(hl) : 0;
    for (int i = 0; i < n; ++i) {
        GMimeHeader* h = g_mime_header_list_get_header_at(hl, i);
        const char* name = g_mime_header_get_name(h);
        const char* value = g_mime_header_get_value(h);  // unfolded, RFC 2047-decoded
        headers.push_back({{"name", name ? name : ""}, {"value", value ? value : ""}});
    }
    walk_state st;
    st.inline_max = inline_max;
    g_mime_message_foreach(msg, visit, &st);  // the top part, then every nested part
    out["headers"] = std::move(headers);
    const char* subject = g_mime_message_get_subject(msg);
    out["subject"] = subject ? subject : "";
    out["text"] = st.have_text ? nlohmann::json(st.text) : nlohmann::json(nullptr);
    out["html"] = st.have_html ? nlohmann::json(st.html) : nlohmann::json(nullptr);
    out["attachments"] = std::move(st.attachments);
    g_object_unref(msg);
    return out;
}

result build_json_body(const delivery& d, const std::string& key, const json_body_options& o,
                       std::string& body) {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0)
        return {result_kind::temporary, "4.3.0", std::string("pipe2: ") + std::strerror(errno), {}};
    pid_t pid = ::fork();
    if (pid < 0) {
        int e = errno;
        ::close(p[0]);
        ::close(p[1]);
        return {result_kind::temporary, "4.3.0", std::string("fork: ") + std::strerror(e), {}};
    }
    if (pid == 0) {
        // Child: limits first, then the hostile bytes. Nothing here returns to the caller.
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        struct rlimit as {
            o.memory_limit, o.memory_limit
        };
        // Not in ASan/TSan builds: their shadow memory is far above any limit (sanitizers.hpp).
        if (util::address_space_limit_usable) ::setrlimit(RLIMIT_AS, &as);
        rlim_t cpu = static_cast<rlim_t>(o.timeout.count() / 1000 + 2);
        struct rlimit c {
            cpu, cpu
        };
        ::setrlimit(RLIMIT_CPU, &c);
        int status = 0;
        std::string doc;
        try {
            int fd = ::open(d.source.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
            if (fd < 0) throw target_error(std::string("open: ") + std::strerror(errno));
            struct stat sb {};
            ::fstat(fd, &sb);
            std::string_view data;
            void* map = nullptr;
            if (sb.st_size > 0) {
                map = ::mmap(nullptr, static_cast<std::size_t>(sb.st_size), PROT_READ, MAP_PRIVATE,
                             fd, 0);
                if (map == MAP_FAILED)
                    throw target_error(std::string("mmap: ") + std::strerror(errno));
                data = {static_cast<const char*>(map), static_cast<std::size_t>(sb.st_size)};
            }
            nlohmann::json j = message_to_json(data, o.inline_max);
            nlohmann::json env;
            if (d.info) {
                env = {{"sender", d.info->env.sender},
                       {"sender_known", d.info->env.sender_known},
                       {"original_recipient", d.info->env.original_recipient}};
            }
            env["recipient"] = d.recipient;
            nlohmann::json top = {{"envelope", env},
                                  {"connector", d.connector},
                                  {"mailbox", d.mailbox},
                                  {"idempotency_key", key},
                                  {"fingerprint", d.fingerprint},
                                  {"size", d.size},
                                  {"arrival", d.arrival},
                                  {"message_id", d.info ? d.info->message_id : ""}};
            for (auto& [k, v] : j.items()) top[k] = std::move(v);
            doc = top.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
        } catch (const std::exception& e) {
            doc = std::string("E") + e.what();
            status = 3;
        }
        const char* q = doc.data();
        std::size_t left = doc.size();
        while (left > 0) {
            ssize_t w = ::write(p[1], q, left);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) ::_exit(4);
            q += w;
            left -= static_cast<std::size_t>(w);
        }
        ::_exit(status);
    }
    ::close(p[1]);
    body.clear();
    auto deadline = std::chrono::steady_clock::now() + o.timeout;
    bool timed_out = false;
    char buf[65536];
    for (;;) {
        auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      deadline - std::chrono::steady_clock::now())
                      .count();
        if (ms <= 0) {
            timed_out = true;
            break;
        }
        struct pollfd pf {
            p[0], POLLIN, 0
        };
        int pr = ::poll(&pf, 1, static_cast<int>(std::min<long>(ms, 1000)));
        if (pr < 0 && errno == EINTR) continue;
        if (pr == 0) continue;
        ssize_t r = ::read(p[0], buf, sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        body.append(buf, static_cast<std::size_t>(r));
    }
    ::close(p[0]);
    if (timed_out) ::kill(pid, SIGKILL);
    int ws = 0;
    while (::waitpid(pid, &ws, 0) < 0 && errno == EINTR) {
    }
    if (timed_out) {
        body.clear();
        return {result_kind::temporary, "4.3.0", "JSON conversion did not finish in time", {}};
    }
    if (WIFSIGNALED(ws)) {
        body.clear();
        // The MIME walk died on this message: it will die again. Same verdict as unparseable.
        return {result_kind::permanent,
                "5.6.0",
                "the message could not be converted to JSON (converter killed by signal " +
                    std::to_string(WTERMSIG(ws)) + ")",
                {}};
    }
    if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0) {
        std::string why = body.size() > 1 && body[0] == 'E' ? body.substr(1) : "converter failed";
        body.clear();
        bool io = why.rfind("open:", 0) == 0 || why.rfind("mmap:", 0) == 0;
        return {io ? result_kind::temporary : result_kind::permanent,
                io ? "4.3.0" : "5.6.0",
                "the message could not be converted to JSON: " + reason_text(why, 200),
                {}};
    }
    return {result_kind::imported, "2.0.0", "json", {}};
}

}  // namespace mx::importer
