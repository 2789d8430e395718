// ops failed: the files in each connector's <drop>/ImportFailed — list, find, retry, purge,
// headers and content — for `mxctl failed` and the console's ImportFailed page.
//
// retry moves the message into <drop>/.retry/ with one rename(2): exactly one retry wins even
// if two admins race, and the importer re-imports it once. The reason file moves to
// ImportFailed/.retried/ so the history stays.
// Security: ids are file names inside ImportFailed; '/', NUL and a leading '.' are refused.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <fstream>

#include "ops.hpp"
#include "target_http.hpp"
#include "util/fs.hpp"

namespace mx::ops {

namespace fs = std::filesystem;

std::vector<failed_entry> scan_failed(env& e, const std::string& only_connector) {
    std::vector<failed_entry> out;
    auto v = e.open_store_read_only().read();
    for (const auto& c : v.connectors()) {
        if (!only_connector.empty() && c.name != only_connector) continue;
        if (c.drop_folder.empty()) continue;
        fs::path dir = fs::path(c.drop_folder) / "ImportFailed";
        std::error_code ec;
        std::vector<std::string> names;
        for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
            auto n = it->path().filename().string();
            if (n.empty() || n[0] == '.' || !it->is_regular_file()) continue;
            if (n.size() > 5 && n.compare(n.size() - 5, 5, ".json") == 0) continue;
            names.push_back(n);
        }
        std::sort(names.begin(), names.end());
        for (auto& n : names) {
            failed_entry f{c.name, c.drop_folder, n, nlohmann::json::object()};
            std::ifstream in(f.reason_path());
            if (in) {
                auto j = nlohmann::json::parse(in, nullptr, false);
                if (!j.is_discarded()) f.reason = j;
            }
            out.push_back(std::move(f));
        }
    }
    return out;
}

void check_failed_id(const std::string& id) {
    if (id.empty() || id[0] == '.' || id.find('/') != std::string::npos ||
        id.find('\0') != std::string::npos)
        throw op_error("'" + id + "' is not an ImportFailed file name (see mxctl failed list)", 2);
}

failed_entry find_failed(env& e, const std::string& arg) {
    std::string conn, file = arg;
    if (auto colon = arg.find(':');
        colon != std::string::npos && colon > 0 && valid_connector_name(arg.substr(0, colon))) {
        auto v = e.open_store_read_only().read();
        if (v.find_connector(arg.substr(0, colon))) {
            conn = arg.substr(0, colon);
            file = arg.substr(colon + 1);
        }
    }
    check_failed_id(file);
    std::vector<failed_entry> hits;
    for (auto& f : scan_failed(e, conn))
        if (f.file == file) hits.push_back(f);
    if (hits.empty()) throw op_error("no failed import '" + arg + "' (see mxctl failed list)");
    if (hits.size() > 1)
        throw op_error("'" + file +
                       "' is in several connectors' ImportFailed; say CONNECTOR:" + file);
    return hits.front();
}

nlohmann::json failed_json(const failed_entry& f) {
    nlohmann::json j = f.reason;
    j["id"] = f.connector + ":" + f.file;
    j["connector"] = f.connector;
    j["path"] = f.message_path().string();
    j["reason_path"] = f.reason_path().string();
    std::error_code ec;
    j["exists"] = fs::exists(f.message_path(), ec);
    return j;
}

bool retry_failed(const failed_entry& f, std::string& why) {
    fs::path retry_dir = f.drop / ".retry";
    fs::path hist = f.drop / "ImportFailed" / ".retried";
    util::make_dirs(retry_dir, 0750);
    util::make_dirs(hist, 0750);
    // The one rename that decides: only one retry of a file can win.
    if (::rename(f.message_path().c_str(), (retry_dir / f.file).c_str()) != 0) {
        why = errno == ENOENT ? "already retried or purged" : std::strerror(errno);
        return false;
    }
    util::fsync_dir(retry_dir);
    util::fsync_dir(f.message_path().parent_path());
    std::error_code ec;
    fs::rename(f.reason_path(), hist / (f.file + ".json." + std::to_string(::time(nullptr))), ec);
    return true;
}

void purge_failed(const failed_entry& f) {
    std::error_code ec;
    fs::remove(f.message_path(), ec);
    fs::remove(f.reason_path(), ec);
}

std::optional<nlohmann::json> failed_content(const failed_entry& f, std::string& why) {
    importer::json_body_options o;
    o.inline_max = 0;
    o.timeout = std::chrono::seconds(20);
    o.memory_limit = std::uint64_t{512} << 20;
    return importer::message_file_to_json(f.message_path(), o, why);
}

std::string failed_headers(const failed_entry& f, std::size_t max_bytes) {
    int fd = ::open(f.message_path().c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return {};
    std::string buf(max_bytes, '\0');
    std::size_t got = 0;
    while (got < max_bytes) {
        ssize_t n = ::read(fd, buf.data() + got, max_bytes - got);
        if (n <= 0) break;
        got += static_cast<std::size_t>(n);
    }
    ::close(fd);
    buf.resize(got);
    // The header block ends at the first empty line.
    for (const char* sep : {"\r\n\r\n", "\n\n"})
        if (auto p = buf.find(sep); p != std::string::npos) return buf.substr(0, p);
    return buf;
}

}  // namespace mx::ops
