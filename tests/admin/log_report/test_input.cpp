// Input: gzip and plain files, rotated-set order, line splitting edge cases, --follow across
// rotation and truncation.
#include <unistd.h>
#include <zlib.h>
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include <nlohmann/json.hpp>
#include <sstream>

#include "input.hpp"
#include "lib/test_support.hpp"
#include "report.hpp"
#include "test_util.hpp"

using namespace mx::logreport;
using namespace mx::logreport::test;
namespace fs = std::filesystem;

namespace {

using mx::test::slurp;
using mx::test::temp_dir;

void write_file(const fs::path& p, const std::string& s) {
    std::ofstream(p, std::ios::binary) << s;
}

void write_gz(const fs::path& p, const std::string& s) {
    gzFile g = gzopen(p.c_str(), "wb");
    REQUIRE(g != nullptr);
    REQUIRE(gzwrite(g, s.data(), static_cast<unsigned>(s.size())) == static_cast<int>(s.size()));
    gzclose(g);
}

std::vector<std::string> lines_of(byte_source& src) {
    std::vector<std::string> v;
    line_splitter s;
    REQUIRE(s.pump(
        src, [&](std::string_view l) { v.emplace_back(l); }, true));
    return v;
}

}  // namespace

TEST_CASE("gzip is detected by content and gives the same lines") {
    temp_dir d;
    const std::string text = slurp(fixture("postfix-maillog.log"));
    write_gz(d.path / "maillog.1.gz", text);
    write_gz(d.path / "no-suffix", text);  // detection by magic, not by name
    auto plain = open_source(fixture("postfix-maillog.log"));
    auto gz = open_source((d.path / "maillog.1.gz").string());
    auto gz2 = open_source((d.path / "no-suffix").string());
    const auto a = lines_of(*plain);
    CHECK(a.size() == read_lines(fixture("postfix-maillog.log")).size());
    CHECK(lines_of(*gz) == a);
    CHECK(lines_of(*gz2) == a);
}

TEST_CASE("line splitting: CRLF, no final newline, empty lines, over-long lines") {
    temp_dir d;
    const std::string long_line(line_splitter::buffer_size + 1000, 'x');
    write_file(d.path / "f", "a\r\nb\n\nc\n" + long_line + "\nd\nlast");
    auto src = open_source((d.path / "f").string());
    const auto v = lines_of(*src);
    REQUIRE(v.size() == 7);
    CHECK(v[0] == "a");
    CHECK(v[1] == "b");
    CHECK(v[2].empty());
    CHECK(v[3] == "c");
    CHECK(v[4].size() == line_splitter::buffer_size);  // cut, the rest skipped
    CHECK(v[5] == "d");
    CHECK(v[6] == "last");
}

TEST_CASE("rotated sets are read oldest first") {
    CHECK(order_rotated({"maillog", "maillog.1", "maillog.2.gz", "maillog.10.gz"}) ==
          std::vector<std::string>{"maillog.10.gz", "maillog.2.gz", "maillog.1", "maillog"});
    CHECK(order_rotated({"mail.log-20240210.gz", "mail.log", "mail.log-20240203.gz"}) ==
          std::vector<std::string>{"mail.log-20240203.gz", "mail.log-20240210.gz", "mail.log"});
    // Unrelated files keep their places.
    CHECK(order_rotated({"b.log", "a.log"}) == std::vector<std::string>{"b.log", "a.log"});
    CHECK(order_rotated({"x", "maillog", "y", "maillog.1"}) ==
          std::vector<std::string>{"x", "maillog.1", "y", "maillog"});
}

TEST_CASE("a rotated set split over plain and gzip files gives the report of the whole") {
    temp_dir d;
    const auto lines = read_lines(fixture("postfix-maillog.log"));
    std::string part[3];
    for (std::size_t i = 0; i < lines.size(); ++i) part[i * 3 / lines.size()] += lines[i] + "\n";
    write_gz(d.path / "maillog.2.gz", part[0]);
    write_file(d.path / "maillog.1", part[1]);
    write_file(d.path / "maillog", part[2]);
    const auto json_of = [](std::vector<std::string> files) {
        report_options opt;
        opt.files = std::move(files);
        opt.format = output_format::json;
        opt.now = ref_now;
        std::ostringstream out, err;
        REQUIRE(run_log_report(opt, out, err) == 0);
        return nlohmann::json::parse(out.str()).at("totals");
    };
    const auto whole = json_of({fixture("postfix-maillog.log")});
    // Given newest first (as a shell glob sorts them), still read oldest first: same totals,
    // and in particular every message opened in an older file is closed in a newer one.
    const auto split = json_of({(d.path / "maillog").string(), (d.path / "maillog.1").string(),
                                (d.path / "maillog.2.gz").string()});
    CHECK(split == whole);
    CHECK(split.at("open_messages") == 0);
}

TEST_CASE("follow keeps reading across rotation and truncation") {
    temp_dir d;
    const fs::path log = d.path / "maillog";
    const auto lines = read_lines(fixture("syslog-traditional.log"));
    write_file(log, lines[0] + "\n" + lines[1] + "\n");
    std::mutex mu;
    std::vector<std::string> seen;
    std::atomic<bool> stop{false};
    std::thread t([&] {
        follow_file(
            log.string(),
            [&](std::string_view l) {
                std::lock_guard<std::mutex> g(mu);
                seen.emplace_back(l);
            },
            stop, {}, 0);
    });
    const auto wait_for = [&](std::size_t n) {
        for (int i = 0; i < 200; ++i) {  // up to 20 s on a loaded machine; not a timing assertion
            {
                std::lock_guard<std::mutex> g(mu);
                if (seen.size() >= n) return true;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
        return false;
    };
    CHECK(wait_for(2));
    {
        std::ofstream(log, std::ios::app) << lines[2] << "\n" << lines[3];  // unfinished line
    }
    CHECK(wait_for(3));
    {
        std::ofstream(log, std::ios::app) << "\n";
        fs::rename(log, d.path / "maillog.1");  // logrotate: move away, then a new file
        std::ofstream(d.path / "maillog.1", std::ios::app)
            << lines[4] << "\n";  // late write to old
        write_file(log, lines[5] + "\n" + lines[6] + "\n");
    }
    CHECK(wait_for(7));
    {
        write_file(log, lines[7] + "\n");  // copytruncate style: same inode, shorter
    }
    CHECK(wait_for(8));
    stop = true;
    t.join();
    REQUIRE(seen.size() == 8);
    for (std::size_t i = 0; i < 8; ++i) CHECK(seen[i] == lines[i]);
}
