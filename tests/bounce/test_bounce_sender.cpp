// The bounce sender's spool handling with an injected clock: coalescing, suppression, retry
// state that survives a new sender object (a restart), backoff, give-up, rate limit. The SMTP
// server is a closed loopback port (connection refused: real behaviour, no stub).
#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>

#include "bounce_sender.hpp"
#include "global/bounce_job.hpp"
#include "global/store.hpp"
#include "util/fs.hpp"

using namespace mx;
namespace fs = std::filesystem;

namespace {

struct fixture {
    fs::path dir;
    config cfg;
    std::optional<store> st;
    std::int64_t now = 1700000000;

    explicit fixture(const std::string& extra = "") {
        dir = fs::temp_directory_path() / ("mx-bounce-" + std::to_string(::getpid()) + "-" +
                                           std::to_string(reinterpret_cast<std::uintptr_t>(this)));
        fs::remove_all(dir);
        fs::create_directories(dir / "failed");
        cfg = parse_config(
            "state_dir = \"" + (dir / "state").string() +
                "\"\nhostname = \"mx.test\"\n[smtp]\nhost = \"127.0.0.1\"\nport = 2598\n"
                "timeout_seconds = 5\n[bounce]\ncoalesce_seconds = 10\n" +
                extra,
            dir / "mx.toml");
        st.emplace(store::open(cfg.store_dir(), false));
        st->write([&](store_tx& tx) {
            connector c;
            c.name = "demo";
            c.drop_folder = (dir / "drop").string();
            c.domains = {"example.com"};
            tx.add_connector(c);
        });
    }
    ~fixture() { fs::remove_all(dir); }

    bounce_job job(const std::string& id, const std::string& fp, const std::string& sender,
                   const std::string& rcpt, const std::string& headers = "Subject: s\r\n") {
        bounce_job j;
        j.id = id;
        j.connector = "demo";
        j.envelope_sender = sender;
        j.fingerprint = fp;
        j.message_path = (dir / "failed" / (id + ".eml")).string();
        j.reason_path = (dir / "failed" / (id + ".eml.json")).string();
        j.arrival_time = now - 60;
        j.created_time = now;
        j.recipients = {{rcpt, "", "5.1.1", "no such mailbox", "no-mailbox"}};
        util::write_file_durable(j.message_path,
                                 "From: " + sender + "\r\n" + headers + "\r\nbody\r\n");
        util::write_file_durable(
            j.reason_path,
            nlohmann::json{{"recipient", rcpt}, {"bounce", {{"state", "pending"}}}}.dump());
        spool_bounce(cfg, j);
        return j;
    }
    nlohmann::json reason(const bounce_job& j) {
        return nlohmann::json::parse(util::read_file(j.reason_path))["bounce"];
    }
    bounce_sender sender() {
        return bounce_sender(cfg, &*st, nullptr, nullptr, [this] { return now; });
    }
};

std::size_t count_files(const fs::path& d) {
    std::error_code ec;
    std::size_t n = 0;
    for (auto& e : fs::directory_iterator(d, ec)) n += e.is_regular_file() ? 1 : 0;
    return n;
}

}  // namespace

TEST_CASE("backoff doubles from retry_min up to retry_max") {
    bounce_settings s;
    CHECK(s.backoff(1) == 300);
    CHECK(s.backoff(2) == 600);
    CHECK(s.backoff(3) == 1200);
    CHECK(s.backoff(5) == 4000);
    CHECK(s.backoff(50) == 4000);
}

TEST_CASE("rate limiter: per sender, sliding window") {
    bounce_rate_limiter rl(2, 3600);
    CHECK(rl.allow("a@b.c", 100));
    CHECK(rl.allow("A@B.C", 200));
    CHECK(!rl.allow("a@b.c", 300));
    CHECK(rl.allow("x@b.c", 300));
    CHECK(rl.allow("a@b.c", 3701));
}

TEST_CASE("jobs of one message and sender coalesce; retry state survives a restart") {
    fixture f;
    auto j1 = f.job("b1", "fp1", "alice@sender.test", "a@example.com");
    auto j2 = f.job("b2", "fp1", "alice@sender.test", "b@example.com");
    auto j3 = f.job("b3", "fp2", "alice@sender.test", "c@example.com");
    {
        auto s = f.sender();
        auto st = s.run_once();  // within the coalescing window: nothing happens yet
        CHECK(st.waiting == 2);
        CHECK(f.reason(j1)["state"] == "pending");
        CHECK(!f.reason(j1).contains("attempts"));
        f.now += 11;
        st = s.run_once();
        CHECK(st.deferred == 2);  // two groups, one server: only the first connects
        CHECK(f.reason(j1)["attempts"] == 1);
        CHECK(f.reason(j2)["attempts"] == 1);
        CHECK(f.reason(j3)["attempts"] == 0);  // not tried: the server failed in this run
        CHECK(f.reason(j1)["detail"].get<std::string>().find("connection problem") !=
              std::string::npos);
        CHECK(count_files(s.spool() / "state") == 2);
    }
    {
        auto s = f.sender();  // a restart: state comes from the spool
        f.now += 100;
        CHECK(s.run_once().waiting == 2);  // backoff not over
        f.now += 300;
        auto st = s.run_once();
        CHECK(st.deferred == 2);
        CHECK(f.reason(j1)["attempts"] == 2);
        CHECK(f.reason(j1)["state"] == "pending");
        f.now += 5 * 86400;
        st = s.run_once();
        CHECK(st.failed == 2);
        CHECK(f.reason(j1)["state"] == "failed");
        CHECK(f.reason(j2)["state"] == "failed");
        CHECK(f.reason(j1)["detail"].get<std::string>().find("gave up after 2 attempts") == 0);
        CHECK(count_files(s.spool() / "new") == 0);
        CHECK(count_files(s.spool() / "done") == 3);
        CHECK(count_files(s.spool() / "state") == 0);
    }
}

TEST_CASE("suppressed bounces never touch the network and are recorded") {
    fixture f;
    auto a = f.job("n1", "fp1", "", "a@example.com");
    auto b =
        f.job("n2", "fp2", "bob@sender.test", "a@example.com", "Auto-Submitted: auto-replied\r\n");
    auto c = f.job("n3", "fp3", "bob@sender.test", "a@example.com",
                   "Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n");
    auto d = f.job("n4", "fp4", "owner-list@sender.test", "a@example.com");
    f.now += 11;
    auto s = f.sender();
    auto st = s.run_once();
    CHECK(st.suppressed == 4);
    CHECK(st.deferred == 0);
    CHECK(f.reason(a)["state"] == "suppressed");
    CHECK(f.reason(a)["detail"] == "null sender <>");
    CHECK(f.reason(b)["detail"].get<std::string>().find("Auto-Submitted") != std::string::npos);
    CHECK(f.reason(c)["detail"] == "message is itself a delivery status notification");
    CHECK(f.reason(d)["detail"].get<std::string>().find("owner-") != std::string::npos);
    CHECK(count_files(s.spool() / "new") == 0);
}

TEST_CASE("per-sender rate limit suppresses the excess") {
    fixture f("rate_limit = 2\n");
    for (int i = 0; i < 4; ++i)
        f.job("r" + std::to_string(i), "fp" + std::to_string(i), "c@s.test", "a@example.com");
    f.now += 11;
    auto s = f.sender();
    auto st = s.run_once();
    CHECK(st.suppressed == 2);
    CHECK(st.deferred == 2);
}

TEST_CASE("unreadable job files are set aside, not lost and not fatal") {
    fixture f;
    auto dir = bounce_spool_dir(f.cfg) / "new";
    util::make_dirs(dir);
    util::write_file_durable(dir / "junk.json", "{not json");
    auto s = f.sender();
    CHECK(s.run_once().bad == 1);
    CHECK(fs::exists(s.spool() / "bad" / "junk.json"));
}

TEST_CASE(
    "a job whose file is still in the work folder waits; a handled job is not spooled again") {
    fixture f;
    auto j = f.job("w1", "fpw", "", "a@example.com");  // null sender: suppressed when handled
    // The importer died between spooling the job and moving the file to ImportFailed.
    j.work_path = (f.dir / "work-w1.eml").string();
    fs::rename(j.message_path, j.work_path);
    spool_bounce(f.cfg, j);
    f.now += 11;
    auto s = f.sender();
    auto st = s.run_once();
    CHECK(st.waiting == 1);
    CHECK(st.suppressed == 0);
    CHECK(fs::exists(s.spool() / "new" / "w1.json"));
    CHECK(f.reason(j)["state"] == "pending");
    // Its next try moves the file and spools the same job (same id) again: handled once.
    fs::rename(j.work_path, j.message_path);
    spool_bounce(f.cfg, j);
    st = s.run_once();
    CHECK(st.suppressed == 1);
    CHECK(f.reason(j)["state"] == "suppressed");
    // Another crash and try after that: the id is in done/, no second job.
    CHECK(spool_bounce(f.cfg, j) == s.spool() / "done" / "w1.json");
    CHECK(count_files(s.spool() / "new") == 0);
    CHECK(s.run_once().suppressed == 0);
    // A job whose work file is gone too is sent (without the original) rather than kept forever.
    auto k = f.job("w2", "fpk", "", "b@example.com");
    k.work_path = (f.dir / "work-w2.eml").string();
    fs::remove(k.message_path);
    spool_bounce(f.cfg, k);
    f.now += 11;
    CHECK(s.run_once().suppressed == 1);
}
