// Golden tests: tests/importer/golden/{new/*,*.eml} in -> Maildir contents, ImportFailed and
// journal entries as tests/importer/golden/expected.json says; then the same bytes again ->
// nothing new (exactly once).
#include <catch2/catch.hpp>

#include "global/bounce_job.hpp"
#include "importer_fixture.hpp"
#include "parse_worker.hpp"

using namespace mx::importer;
using namespace mx::importer::testing;
namespace fs = std::filesystem;

namespace {

const fs::path golden = MX_GOLDEN_DIR;

fs::path input_path(const std::string& name) {
    return fs::exists(golden / "new" / name) ? golden / "new" / name : golden / name;
}

void drop_inputs(fixture& fx) {
    for (auto& e : fs::directory_iterator(golden / "new"))
        fs::copy_file(e.path(), fx.root / "drop" / "new" / e.path().filename());
    for (auto& e : fs::directory_iterator(golden))
        if (e.path().extension() == ".eml")
            fs::copy_file(e.path(), fx.root / "drop" / e.path().filename());
}

}  // namespace

TEST_CASE("golden: drop folder files land in the expected mailboxes, once", "[golden]") {
    fixture fx;
    auto expected = nlohmann::json::parse(slurp(golden / "expected.json"));
    drop_inputs(fx);
    auto stats = fx.drain();
    CHECK(stats.files == expected["files"].size());

    std::map<std::string, std::size_t> per_mailbox;
    std::size_t failures = 0;
    auto t = fx.jr->read();
    for (auto& [name, exp] : expected["files"].items()) {
        INFO("file " << name);
        const std::string original = slurp(input_path(name));
        // metadata from the parser, as the worker reports it
        auto meta = analyse_file(input_path(name).string(), {});
        REQUIRE(meta.value("ok", false));
        for (auto& [k, v] : exp["meta"].items()) {
            INFO("meta " << k);
            if (k == "envelope_source" || k == "sender")
                CHECK(meta["info"][k == "sender" ? "sender" : "envelope_source"] == v);
            else
                CHECK(meta["info"][k] == v);
        }
        // journal: the file name leads to exactly one fingerprint
        auto fps = fx.jr->lookup(t, journal::by::file, name);
        REQUIRE(fps.size() == 1);
        const std::string fp = fps[0].first;
        CHECK(fp == meta["fingerprint"]);
        for (auto& [rcpt, mailbox] : exp["deliveries"].items()) {
            INFO("recipient " << rcpt);
            auto rec = fx.jr->delivery(t, fp, rcpt);
            REQUIRE(rec);
            CHECK((*rec)["state"] == "imported");
            CHECK((*rec)["mailbox"] == mailbox);
            auto path =
                fx.maildir_new(mailbox.get<std::string>()) / (*rec)["location"].get<std::string>();
            REQUIRE(fs::exists(path));
            CHECK(slurp(path) == original);  // the original bytes, never re-serialised
            // Dovecot-compatible name: <secs>.M<usecs>P<pid>Q<n>.<host>,S=<size>
            CHECK(path.filename().string().find(",S=" + std::to_string(original.size())) !=
                  std::string::npos);
            ++per_mailbox[mailbox.get<std::string>()];
        }
        if (exp.contains("failed")) {
            auto failed_msg = fx.root / "drop" / "ImportFailed" / name;
            REQUIRE(fs::exists(failed_msg));
            CHECK(slurp(failed_msg) == original);
            auto reason =
                nlohmann::json::parse(slurp(fx.root / "drop" / "ImportFailed" / (name + ".json")));
            CHECK(reason["bounce"]["state"] == "pending");
            CHECK(reason["importer_host"] == "test.host");
            auto job_path = mx::bounce_spool_dir(fx.cfg) / "new" /
                            (reason["bounce"]["job"].get<std::string>() + ".json");
            REQUIRE(fs::exists(job_path));
            auto job = mx::bounce_job_from_json(nlohmann::json::parse(slurp(job_path)));
            CHECK(job.message_path == failed_msg.string());
            for (auto& [rcpt, f] : exp["failed"].items()) {
                auto rec = fx.jr->delivery(t, fp, rcpt);
                REQUIRE(rec);
                CHECK((*rec)["state"] == "failed");
                CHECK((*rec)["status"] == f["status"]);
                CHECK((*rec)["reason"] == f["reason"]);
                bool listed = false;
                for (auto& r : reason["recipients"])
                    if (r["recipient"] == rcpt) {
                        listed = true;
                        CHECK(r["status"] == f["status"]);
                    }
                CHECK(listed);
                bool in_job = false;
                for (auto& r : job.recipients)
                    in_job |= r.final_recipient == rcpt && r.status == f["status"];
                CHECK(in_job);
                ++failures;
            }
        }
    }
    t.abort();
    for (auto& [mb, n] : per_mailbox) {
        INFO("mailbox " << mb);
        CHECK(fx.count(fx.maildir_new(mb)) == n);
    }
    CHECK(failures == 1);
    CHECK(fx.count(fx.root / "drop" / "new") == 0);
    CHECK(fx.count(fx.root / "drop" / ".work" / "test.host") == 0);

    SECTION("the same bytes dropped again are recognised: nothing imported twice") {
        std::size_t before_failed = fx.count(fx.root / "drop" / "ImportFailed");
        drop_inputs(fx);
        auto again = fx.drain();
        CHECK(again.imported == 0);
        CHECK(again.failed == 0);
        CHECK(again.duplicates > 0);
        for (auto& [mb, n] : per_mailbox) CHECK(fx.count(fx.maildir_new(mb)) == n);
        CHECK(fx.count(fx.root / "drop" / "ImportFailed") == before_failed);
        CHECK(fx.count(fx.root / "drop" / "new") == 0);
        CHECK(fx.count(fx.root / "drop" / ".work" / "test.host") == 0);
    }
}
