// Same totals as pflogsumm (Debian's /usr/sbin/pflogsumm) on a mixed log: the real capture
// plus the hand-written milter-reject lines. Where the tools legitimately differ the test
// states the difference explicitly (docs/log-report.md explains each):
//  - pflogsumm does not count smtpd milter-reject lines (only cleanup's END-OF-MESSAGE ones);
//  - pflogsumm only reads syslog names "postfix", "postfix/smtps", "postfix/submission":
//    client= lines of other instances (postfix-in/smtpd) are not received for it.
#include <catch2/catch.hpp>

#include <cstdio>
#include <regex>
#include <sstream>

#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "report.hpp"
#include "test_util.hpp"

using namespace mx::logreport;
using namespace mx::logreport::test;

namespace {

std::string run(const std::string& cmd) {
    std::string out;
    FILE* p = popen(cmd.c_str(), "r");
    REQUIRE(p != nullptr);
    char buf[4096];
    for (std::size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
    REQUIRE(pclose(p) == 0);
    return out;
}

long grand_total(const std::string& report, const std::string& label) {
    // "     11   received", "      2   deferred  (22  deferrals)"
    const std::regex re("\\n\\s*(\\d+)\\s+" + label + "\\b");
    std::smatch m;
    REQUIRE(std::regex_search(report, m, re));
    return std::stol(m[1]);
}

long deferrals(const std::string& report) {
    const std::regex re("deferred\\s+\\((\\d+)\\s+deferrals\\)");
    std::smatch m;
    if (!std::regex_search(report, m, re)) return 0;
    return std::stol(m[1]);
}

}  // namespace

TEST_CASE("totals agree with pflogsumm on the mixed log") {
    const std::string pflogsumm = "/usr/sbin/pflogsumm";
    REQUIRE(std::ifstream(pflogsumm).good());  // installed by scripts/deps
    const std::string real = fixture("postfix-maillog.log");
    const std::string milter = fixture("milter-reject.log");
    const std::string pf =
        run(pflogsumm + " --detail 0 '" + real + "' '" + milter + "' 2>/dev/null");

    report_options opt;
    opt.files = {real, milter};
    opt.format = output_format::json;
    opt.now = ref_now;
    std::ostringstream out, err;
    REQUIRE(run_log_report(opt, out, err) == 0);
    const auto j = nlohmann::json::parse(out.str());
    const auto& t = j.at("totals");
    const auto ours = [&](const char* k) { return t.at(k).get<long>(); };

    // Lines pflogsumm does not read as its own (see the file comment).
    long other_instance_clients = 0;
    for (const auto& f : {real, milter})
        for (const auto& l : read_lines(f))
            if (l.find(" postfix-in/smtpd[") != std::string::npos &&
                l.find(": client=") != std::string::npos)
                ++other_instance_clients;
    REQUIRE(other_instance_clients > 0);  // the difference is really exercised
    const long milter_eom = j.at("rejects").at("milter_by_stage").value("END-OF-MESSAGE", 0L);
    REQUIRE(ours("milter_rejected") > milter_eom);

    CHECK(ours("received") == grand_total(pf, "received") + other_instance_clients);
    CHECK(ours("delivered") == grand_total(pf, "delivered"));
    CHECK(ours("deferred") == deferrals(pf));
    CHECK(ours("deferred_messages") == grand_total(pf, "deferred"));
    CHECK(ours("bounced") == grand_total(pf, "bounced"));
    CHECK(ours("rejected") - ours("milter_rejected") + milter_eom == grand_total(pf, "rejected"));
    CHECK(ours("unparsed") == 0);
}
