// Unit tests of the application targets: signatures, spec parsing, HTTP verdicts,
// retry delays (deterministic jitter: no sleeping), command splitting and real commands.
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <curl/curl.h>
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>

#include "lib/test_support.hpp"
#include "message_json.hpp"
#include "message_parse.hpp"
#include "target_http.hpp"

using namespace mx::importer;
namespace fs = std::filesystem;

namespace {

using mx::test::temp_dir;

fs::path write(const fs::path& p, const std::string& s, unsigned mode = 0644) {
    std::ofstream(p, std::ios::binary) << s;
    ::chmod(p.c_str(), mode);
    return p;
}

const mx::config_reader no_section(nlohmann::json::object(), "targets");

}  // namespace

// The JSON converter in-process (as mx-importer has it); mxctl's exec path is covered by
// targets_integration (mxctl target-test).
const bool converter_registered =
    (mx::importer::set_message_converter(&mx::importer::message_document), true);

TEST_CASE("signature is HMAC-SHA256 over timestamp.body, lower-case hex") {
    // python3: hmac.new(b'topsecret', b'1700000000.hello world', hashlib.sha256).hexdigest()
    CHECK(webhook_signature("topsecret", 1700000000, "hello world") ==
          "c7494992702f570a2a462b0a803b9e3149e9ab53a9b2e418e30edc71b39e0514");
    CHECK(webhook_signature("topsecret", 1700000001, "hello world") !=
          webhook_signature("topsecret", 1700000000, "hello world"));
    CHECK(webhook_signature("other", 1700000000, "hello world") !=
          webhook_signature("topsecret", 1700000000, "hello world"));
}

TEST_CASE("idempotency key is the journal key, header-safe") {
    CHECK(idempotency_key("ab12", "info@example.test") == "ab12:info@example.test");
    CHECK(idempotency_key("ab12", "\"a b\"@x\r\n%") == "ab12:\"a%20b\"@x%0D%0A%25");
}

TEST_CASE("reason text from hostile receivers is one CRLF-free, bounded line") {
    CHECK(reason_text("  bad\r\nrequest\t\tnow  ") == "bad request now");
    CHECK(reason_text(std::string(1000, 'x'), 50) == std::string(50, 'x') + "...");
    CHECK(reason_text("caf\xc3\xa9 \xff!") == "caf\xc3\xa9 ?!");
    std::string injected = reason_text("ok\r\nBcc: victim@example.com\r\n\r\nbody");
    CHECK(injected.find('\r') == std::string::npos);
    CHECK(injected.find('\n') == std::string::npos);
}

TEST_CASE("webhook spec: URL, fragment options, config defaults, errors") {
    auto o = parse_webhook_spec(
        "https://app.example/in?token=x#format=json&inline_max=64k&auth=bearer", no_section);
    CHECK(o.url == "https://app.example/in?token=x");
    CHECK(o.body == webhook_options::format::json);
    CHECK(o.inline_max == 64 * 1024);
    CHECK(o.auth == webhook_options::auth::bearer);
    CHECK(o.describe_url() == "https://app.example/in");
    auto b = parse_webhook_spec("https://u:pw@h:8080/p#auth=basic;user=actionmailbox", no_section);
    CHECK(b.auth == webhook_options::auth::basic);
    CHECK(b.user == "actionmailbox");
    CHECK(b.describe_url() == "https://h:8080/p");  // no password in reasons and logs
    nlohmann::json sec = {
        {"webhook_concurrency", 7}, {"webhook_format", "json"}, {"webhook_timeout_seconds", 5}};
    auto c = parse_webhook_spec("http://h/", mx::config_reader(sec, "targets"));
    CHECK(c.concurrency == 7);
    CHECK(c.body == webhook_options::format::json);
    CHECK(c.timeout == std::chrono::seconds(5));
    CHECK(parse_webhook_spec("http://h/#concurrency=2", mx::config_reader(sec, "targets"))
              .concurrency == 2);
    CHECK_THROWS_AS(parse_webhook_spec("ftp://h/", no_section), target_error);
    CHECK_THROWS_AS(parse_webhook_spec("http://h/#format=xml", no_section), target_error);
    CHECK_THROWS_AS(parse_webhook_spec("http://h/#auth=basic", no_section), target_error);
    CHECK_THROWS_AS(parse_webhook_spec("http://h/#colour=red", no_section), target_error);
    CHECK_THROWS_AS(parse_webhook_spec("http://h/a b", no_section), target_error);
}

TEST_CASE("webhook credentials never travel over plain http:// except to loopback") {
    for (const char* spec :
         {"http://app.example/in#auth=bearer", "http://app.example/in#auth=basic&user=u",
          "http://u:pw@app.example/", "http://10.0.0.1/#auth=bearer",
          "http://[2001:db8::1]:80/#auth=bearer", "http://127.0.0.1.example/#auth=bearer"}) {
        INFO(spec);
        CHECK_THROWS_WITH(parse_webhook_spec(spec, no_section),
                          Catch::Contains("plain http://") && !Catch::Contains("pw"));
    }
    for (const char* spec :
         {"https://app.example/in#auth=bearer", "http://127.0.0.1:8100/#auth=bearer",
          "http://127.1.2.3/#auth=basic&user=u", "http://[::1]:8100/#auth=bearer",
          "http://LOCALHOST:8100/#auth=bearer", "http://app.example/in",
          "http://app.example/#sign=1"}) {
        INFO(spec);
        CHECK_NOTHROW(parse_webhook_spec(spec, no_section));
    }
    // The importer builds targets through make_target: the same refusal (a temporary 4.3.5
    // "target: ..." for the message, so nothing bounces while the admin fixes the URL).
    mx::config cfg;
    CHECK_THROWS_AS(make_target(cfg, "webhook:http://app.example/#auth=bearer"), target_error);
}

TEST_CASE("HTTP verdicts: 2xx imported, 4xx permanent, 408/429/5xx/transport temporary") {
    auto v = [](long status, std::string body = {}, std::string ra = {}) {
        http_answer a;
        a.status = status;
        a.body = std::move(body);
        a.retry_after_header = std::move(ra);
        return classify_http(a, "http://h/p", 1700000000);
    };
    CHECK(v(200).kind == result_kind::imported);
    CHECK(v(204).kind == result_kind::imported);
    auto r422 = v(422, "mailbox\r\nfull");
    CHECK(r422.kind == result_kind::permanent);
    CHECK(r422.status == "5.6.0");
    CHECK(r422.detail == "webhook http://h/p answered HTTP 422: mailbox full");
    CHECK(v(404).status == "5.1.1");
    CHECK(v(401).status == "5.7.1");
    CHECK(v(413).status == "5.3.4");
    CHECK(v(418).kind == result_kind::permanent);
    CHECK(v(408).kind == result_kind::temporary);
    auto r429 = v(429, "slow down", "120");
    CHECK(r429.kind == result_kind::temporary);
    CHECK(r429.status == "4.7.0");
    REQUIRE(r429.retry_after);
    CHECK(r429.retry_after->count() == 120);
    auto r503 = v(503, "", "Tue, 14 Nov 2023 22:23:20 GMT");  // 1700000600
    CHECK(r503.kind == result_kind::temporary);
    REQUIRE(r503.retry_after);
    CHECK(r503.retry_after->count() == 600);
    CHECK_FALSE(v(500).retry_after);
    CHECK(v(301).kind == result_kind::temporary);
    http_answer t;
    t.curl_code = CURLE_OPERATION_TIMEDOUT;
    t.error = "Operation timed out";
    CHECK(classify_http(t, "http://h/p", 0).kind == result_kind::temporary);
    t.curl_code = CURLE_GOT_NOTHING;
    CHECK(classify_http(t, "http://h/p", 0).status == "4.4.2");
}

TEST_CASE("Retry-After parsing") {
    CHECK(parse_retry_after(" 30 ", 0)->count() == 30);
    CHECK(parse_retry_after("Tue, 14 Nov 2023 22:13:20 GMT", 1700000000)->count() == 0);
    CHECK_FALSE(parse_retry_after("soon", 0));
    CHECK_FALSE(parse_retry_after("", 0));
}

TEST_CASE("retry delay: exponential, capped, honours Retry-After, jitter bounded") {
    using s = std::chrono::seconds;
    CHECK(retry_delay(1, s(60), s(3600), std::nullopt, 0.5) == s(60));
    CHECK(retry_delay(2, s(60), s(3600), std::nullopt, 0.5) == s(120));
    CHECK(retry_delay(5, s(60), s(3600), std::nullopt, 0.5) == s(960));
    CHECK(retry_delay(40, s(60), s(3600), std::nullopt, 0.5) == s(3600));
    CHECK(retry_delay(1, s(60), s(3600), s(600), 0.5) == s(600));  // receiver asks for more
    CHECK(retry_delay(1, s(60), s(3600), s(999999), 0.5) == s(86400));
    CHECK(retry_delay(3, s(60), s(3600), s(10), 0.5) == s(240));  // ours is longer
    // Jitter: +-20 % around the base value, never below Retry-After.
    CHECK(retry_delay(2, s(60), s(3600), std::nullopt, 0.0) == s(96));
    CHECK(retry_delay(2, s(60), s(3600), std::nullopt, 0.999999) == s(144));
    CHECK(retry_delay(1, s(60), s(3600), s(600), 0.0) == s(600));
}

TEST_CASE("command lines are split without a shell") {
    CHECK(split_command("/bin/app --to 'a b' \"c \\\"d\\\"\" e\\ f") ==
          std::vector<std::string>{"/bin/app", "--to", "a b", "c \"d\"", "e f"});
    CHECK(split_command("/x $HOME `id` ;rm") ==
          std::vector<std::string>{"/x", "$HOME", "`id`", ";rm"});
    CHECK_THROWS_AS(split_command("/x 'open"), target_error);
    CHECK_THROWS_AS(split_command("   "), target_error);
    CHECK_THROWS_AS(parse_exec_spec("relative/cmd", no_section), target_error);
    CHECK(parse_exec_spec("/bin/true", mx::config_reader({{"exec_timeout_seconds", 3}}, "targets"))
              .timeout == std::chrono::seconds(3));
}

TEST_CASE("commands: stdin, environment, exit codes like pipe(8), no inherited fds") {
    temp_dir t;
    auto msg = write(t.path / "msg", "Subject: hi\r\n\r\nbody\r\n");
    auto script = write(t.path / "s.sh",
                        "#!/bin/sh\n"
                        "cat > \"$OUT\"\n"
                        "echo \"rcpt=$RECIPIENT key=$MX_IDEMPOTENCY_KEY home=$HOME\"\n"
                        "ls /proc/self/fd | wc -l >&2\n"
                        "exit $CODE\n",
                        0755);
    auto run = [&](int code) {
        return run_command(
            {script.string()},
            {"OUT=" + (t.path / "out").string(), "CODE=" + std::to_string(code), "RECIPIENT=a@b",
             "MX_IDEMPOTENCY_KEY=k1", "HOME=/", "PATH=/usr/bin:/bin"},
            msg, std::chrono::seconds(20), 4096);
    };
    auto ok = run(0);
    CHECK(classify_exit(ok, "cmd").kind == result_kind::imported);
    CHECK(mx::importer::reason_text(ok.output).find("rcpt=a@b key=k1 home=/") == 0);
    // fds of `ls`: 0, 1, 2 and the one it opened for /proc/self/fd -> 4; nothing of ours.
    CHECK(ok.output.find("\n4") != std::string::npos);
    std::ifstream in(t.path / "out");
    std::string got((std::istreambuf_iterator<char>(in)), {});
    CHECK(got == "Subject: hi\r\n\r\nbody\r\n");
    CHECK(classify_exit(run(75), "cmd").kind == result_kind::temporary);
    auto nouser = classify_exit(run(67), "cmd");
    CHECK(nouser.kind == result_kind::permanent);
    CHECK(nouser.status == "5.1.1");
    CHECK(nouser.detail.rfind("cmd exited 67 (EX_NOUSER): rcpt=a@b", 0) == 0);
    auto other = classify_exit(run(1), "cmd");
    CHECK(other.kind == result_kind::permanent);
    CHECK(other.status == "5.3.0");
}

TEST_CASE("commands: crash and missing binary are temporary, output is bounded") {
    temp_dir t;
    auto msg = write(t.path / "msg", "x\r\n");
    auto crash = write(t.path / "crash.sh", "#!/bin/sh\necho dying\nkill -SEGV $$\n", 0755);
    auto r = classify_exit(run_command({crash.string()}, {}, msg, std::chrono::seconds(20), 4096),
                           "cmd");
    CHECK(r.kind == result_kind::temporary);
    CHECK(r.detail.find("died with signal 11") != std::string::npos);
    auto missing = run_command({(t.path / "nope").string()}, {}, msg, std::chrono::seconds(5), 64);
    CHECK(!missing.spawn_error.empty());
    CHECK(classify_exit(missing, "cmd").kind == result_kind::temporary);
    auto big = write(t.path / "big.sh",
                     "#!/bin/sh\nhead -c 5000000 /dev/zero | tr '\\0' 'y'\nexit 1\n", 0755);
    auto b =
        run_command({big.string()}, {"PATH=/usr/bin:/bin"}, msg, std::chrono::seconds(30), 100);
    CHECK(b.output.size() == 100);
    CHECK(b.output_total == 5000000);
    auto rb = classify_exit(b, "cmd");
    CHECK(rb.kind == result_kind::permanent);
    CHECK(rb.detail.size() < 500);
}

TEST_CASE("commands: timeout kills the whole process group") {
    temp_dir t;
    auto msg = write(t.path / "msg", "x\r\n");
    auto pidfile = t.path / "child.pid";
    auto hang = write(t.path / "hang.sh",
                      "#!/bin/sh\n(sleep 300; echo never) &\necho $! > " + pidfile.string() +
                          "\necho started\nwait\n",
                      0755);
    auto o = run_command({hang.string()}, {"PATH=/usr/bin:/bin"}, msg,
                         std::chrono::milliseconds(1500), 4096);
    CHECK(o.timed_out);
    CHECK(classify_exit(o, "cmd").kind == result_kind::temporary);
    CHECK(o.output.find("started") != std::string::npos);
    std::ifstream in(pidfile);
    pid_t grandchild = 0;
    in >> grandchild;
    REQUIRE(grandchild > 0);
    // The background sleep was in the group: it is gone (or a zombie reaped by init soon).
    bool alive = ::kill(grandchild, 0) == 0;
    if (alive) {
        std::ifstream st("/proc/" + std::to_string(grandchild) + "/stat");
        std::string pid, comm, state;
        st >> pid >> comm >> state;
        alive = state != "Z";
    }
    CHECK_FALSE(alive);
}

TEST_CASE("JSON document: decoded headers, bodies, attachments with sizes, inline limit") {
    std::string m =
        "From: =?UTF-8?B?SsO8cmdlbg==?= <j@example.test>\r\n"
        "To: info@example.test\r\n"
        "Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n"
        "--b1\r\n"
        "Content-Type: multipart/alternative; boundary=\"b2\"\r\n\r\n"
        "--b2\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
        "Content-Transfer-Encoding: quoted-printable\r\n\r\nH=E4llo\r\n"
        "--b2\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Hallo</p>\r\n"
        "--b2--\r\n"
        "--b1\r\nContent-Type: application/pdf; name=\"a.pdf\"\r\n"
        "Content-Disposition: attachment; filename=\"a.pdf\"\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n"
        "--b1\r\nContent-Type: image/png\r\n"
        "Content-Disposition: attachment; filename=\"big.png\"\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\n" +
        std::string(400, 'A') +
        "\r\n"
        "--b1--\r\n";
    auto j = message_to_json(m, 100);
    CHECK(j["subject"] == "Grüße");
    bool from_decoded = false;
    for (auto& h : j["headers"])
        if (h["name"] == "From") from_decoded = h["value"].get<std::string>().find("Jürgen") == 0;
    CHECK(from_decoded);
    CHECK(j["text"].get<std::string>().find("Hällo") == 0);
    CHECK(j["html"].get<std::string>().find("<p>Hallo</p>") == 0);
    REQUIRE(j["attachments"].size() == 2);
    CHECK(j["attachments"][0]["filename"] == "a.pdf");
    CHECK(j["attachments"][0]["size"] == 9);
    CHECK(j["attachments"][0]["content_base64"] == "JVBERi0xLjQK");
    CHECK(j["attachments"][1]["size"] == 300);
    CHECK_FALSE(j["attachments"][1].contains("content_base64"));  // above inline_max
}

TEST_CASE("JSON body is built in a child; hostile input cannot take the caller down") {
    temp_dir t;
    auto p = write(t.path / "m", "Subject: x\r\nContent-Type: text/plain\r\n\r\nhello\r\n");
    message_info info;
    info.env.sender = "s@example.test";
    info.env.sender_known = true;
    delivery d{p, 40, "info@example.test", "info@example.test", "demo", "fp1", 1700000000, &info};
    std::string body;
    auto r = build_json_body(d, "fp1:info@example.test", {}, body);
    REQUIRE(r.kind == result_kind::imported);
    auto j = nlohmann::json::parse(body);
    CHECK(j["envelope"]["sender"] == "s@example.test");
    CHECK(j["envelope"]["recipient"] == "info@example.test");
    CHECK(j["connector"] == "demo");
    CHECK(j["idempotency_key"] == "fp1:info@example.test");
    CHECK(j["text"].get<std::string>().find("hello") == 0);
    // An unreadable file is the disk's problem: temporary.
    delivery gone = d;
    gone.source = t.path / "missing";
    CHECK(build_json_body(gone, "k", {}, body).kind == result_kind::temporary);
}

namespace {
std::string text_of(const std::string& m) {
    auto j = message_to_json(m, 0);
    return j["text"].is_string() ? j["text"].get<std::string>() : std::string("<null>");
}
}  // namespace

TEST_CASE("JSON fidelity: the header block ends where a reader ends it") {
    // No empty line: the first line that cannot be a header starts the body.
    CHECK(text_of("Subject: s\nFrom: a@b.test\nHello there.\nMore.\n") == "Hello there.\nMore.\n");
    CHECK(text_of("Subject: s\r\nHi,\r\nbody\r\n") == "Hi,\r\nbody\r\n");
    // No header at all (a digest fragment): everything is body.
    auto j = message_to_json("Just text, no headers.\n", 0);
    CHECK(j["text"] == "Just text, no headers.\n");
    CHECK(j["headers"].empty());
    CHECK(message_to_json("", 0)["text"] == "");
    // The same inside a body part; and a leading mbox From_ line is not a header.
    CHECK(text_of("Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n"
                  "Body right after the part header.\n--b--\n") ==
          "Body right after the part header.");
    CHECK(text_of("From a@b Tue Dec  1 10:00:00 2026\nSubject: s\n\nbody\n") == "body\n");
}

TEST_CASE("JSON fidelity: invalid or missing Content-Type is text/plain (RFC 2045 5.2)") {
    CHECK(text_of("Subject: s\nContent-Type: text\n\nhello\n") == "hello\n");
    CHECK(text_of("Subject: s\nContent-Type: garbage here\n\nhello\n") == "hello\n");
    CHECK(text_of("Subject: s\n\nno MIME at all\n") == "no MIME at all\n");
    // multipart/digest: a part without Content-Type is message/rfc822
    auto j = message_to_json(
        "Content-Type: multipart/digest; boundary=d\n\n--d\n\nSubject: one\n\nfirst\n--d--\n", 0);
    REQUIRE(j["attachments"].size() == 1);
    CHECK(j["attachments"][0]["content_type"] == "message/rfc822");
}

TEST_CASE("JSON fidelity: inline text parts with a filename are the body, attachments are not") {
    std::string m =
        "Content-Type: multipart/mixed; boundary=b\n\n"
        "--b\nContent-Type: text/plain; name=\"m.txt\"\nContent-Disposition: inline; "
        "filename=\"m.txt\"\n\nthe text\n"
        "--b\nContent-Type: text/plain; name=\"n.txt\"\nContent-Disposition: attachment; "
        "filename=\"n.txt\"\n\nattached notes\n--b--\n";
    auto j = message_to_json(m, 0);
    CHECK(j["text"] == "the text");
    REQUIRE(j["attachments"].size() == 1);
    CHECK(j["attachments"][0]["filename"] == "n.txt");
    CHECK(text_of("Content-Type: text/plain\nContent-Disposition: attachment\n\nx\n") == "<null>");
}

TEST_CASE("JSON fidelity: charsets convert to UTF-8, with the documented fallback") {
    auto with = [](const std::string& charset, const std::string& body) {
        return text_of("Content-Type: text/plain" + charset +
                       "\nContent-Transfer-Encoding: 8bit\n\n" + body);
    };
    CHECK(with("; charset=iso-8859-1",
               "Gr\xFC\xDF"
               "e\n") ==
          "Gr\xC3\xBC\xC3\x9F"
          "e\n");
    CHECK(with("; charset=koi8-r", "\xF0\xD2\xC9\xD7\xC5\xD4\n") ==
          "\xD0\x9F\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82\n");
    // us-ascii / no charset / unknown charset: valid UTF-8 stays, anything else is windows-1252
    CHECK(with("; charset=us-ascii",
               "Gr\xC3\xBC\xC3\x9F"
               "e\n") ==
          "Gr\xC3\xBC\xC3\x9F"
          "e\n");
    CHECK(with("", "5 \x80, \x93q\x94\n") == "5 \xE2\x82\xAC, \xE2\x80\x9Cq\xE2\x80\x9D\n");
    CHECK(with("; charset=x-no-such", "caf\xE9\n") == "caf\xC3\xA9\n");
    // utf-8 that lies: the invalid byte becomes U+FFFD, the rest stays
    CHECK(with("; charset=utf-8", "ok \xC3\xA9 bad \xE9.\n") == "ok \xC3\xA9 bad \xEF\xBF\xBD.\n");
    // a byte invalid in a known charset: U+FFFD, conversion goes on
    CHECK(with("; charset=shift_jis",
               "a\x81\x20"
               "b\n")
              .find('b') != std::string::npos);
}

TEST_CASE("JSON fidelity: alternative gives text and html; related shows its start part") {
    std::string m =
        "Content-Type: multipart/alternative; boundary=a\n\n"
        "--a\nContent-Type: text/plain\n\nplain\n"
        "--a\nContent-Type: multipart/related; boundary=r; start=\"<h@x>\"\n\n"
        "--r\nContent-Type: image/png; name=logo.png\nContent-ID: <l@x>\n"
        "Content-Transfer-Encoding: base64\n\niVBORw0KGgo=\n"
        "--r\nContent-Type: text/html\nContent-ID: <h@x>\n\n<p>html</p>\n--r--\n--a--\n";
    auto j = message_to_json(m, 0);
    CHECK(j["text"] == "plain");
    CHECK(j["html"] == "<p>html</p>");
    REQUIRE(j["attachments"].size() == 1);
    CHECK(j["attachments"][0]["filename"] == "logo.png");
    CHECK(j["attachments"][0]["size"] == 8);
}

TEST_CASE("JSON fidelity: message/rfc822 is one attachment with the embedded bytes") {
    std::string inner = "From: c@x.test\nSubject: inner\n\ninner body\n";
    std::string m =
        "Subject: outer\nContent-Type: multipart/mixed; boundary=b\n\n"
        "--b\nContent-Type: text/plain\n\nouter body\n"
        "--b\nContent-Type: message/rfc822\nContent-Disposition: attachment; "
        "filename=\"fwd.eml\"\n\n" +
        inner + "--b--\n";
    auto j = message_to_json(m, 1000);
    CHECK(j["text"] == "outer body");
    CHECK(j["subject"] == "outer");
    REQUIRE(j["attachments"].size() == 1);
    CHECK(j["attachments"][0]["content_type"] == "message/rfc822");
    CHECK(j["attachments"][0]["filename"] == "fwd.eml");
    CHECK(j["attachments"][0]["size"] == inner.size() - 1);  // the last LF is the delimiter's
}

TEST_CASE("JSON fidelity: RFC 2231 and RFC 2047 filenames, addresses, first Subject") {
    std::string m =
        "From: =?UTF-8?Q?M=C3=BCller=2C_Hans?= <h@x.test>\n"
        "To: Heinz =?iso-8859-1?Q?M\xFCller?= <m@x.test>, b@x.test (comment only)\n"
        "Cc: Team: a@x.test, \"B, P\" <b@x.test>;\n"
        "Subject: first\nSubject: second\n"
        "Content-Type: multipart/mixed; boundary=b\n\n"
        "--b\nContent-Type: text/plain\n\nbody\n"
        "--b\nContent-Type: application/octet-stream\n"
        "Content-Disposition: attachment; filename*=utf-8''Gr%C3%BC%C3%9Fe.txt\n\nx\n"
        "--b\nContent-Type: application/octet-stream\nContent-Disposition: attachment;\n"
        " filename*0*=iso-8859-1''%DCml; filename*1=\"aut.bin\"\n\nx\n"
        "--b\nContent-Type: application/pdf; name=\"=?UTF-8?B?TcOkcnoucGRm?=\"\n"
        "Content-Disposition: attachment; filename=\"=?UTF-8?B?TcOkcnoucGRm?=\"\n\nx\n--b--\n";
    auto j = message_to_json(m, 0);
    CHECK(j["subject"] == "first");
    CHECK(j["from"] == nlohmann::json::parse(R"([{"name":"Müller, Hans","address":"h@x.test"}])"));
    CHECK(
        j["to"] ==
        nlohmann::json::parse(
            R"([{"name":"Heinz Müller","address":"m@x.test"},{"name":"","address":"b@x.test"}])"));
    CHECK(j["cc"] ==
          nlohmann::json::parse(
              R"([{"name":"","address":"a@x.test"},{"name":"B, P","address":"b@x.test"}])"));
    REQUIRE(j["attachments"].size() == 3);
    CHECK(j["attachments"][0]["filename"] == "Grüße.txt");
    CHECK(j["attachments"][1]["filename"] == "Ümlaut.bin");
    CHECK(j["attachments"][2]["filename"] == "März.pdf");
}

TEST_CASE("JSON fidelity: encoded-words decode as RFC 2047 means them") {
    // padded base64 words followed by more words (GMime alone stops at the first padding)
    auto j = message_to_json(
        "Subject: =?UTF-8?B?TXlTdXJ2ZXk=?=\n =?UTF-8?B?LmNvbTogIFk=?=\n"
        " =?UTF-8?B?b3U=?=\n\nx\n",
        0);
    CHECK(j["subject"] == "MySurvey.com:  You");
    // a character split across two words still joins
    j = message_to_json("Subject: =?UTF-8?B?R3LD?= =?UTF-8?B?vMOfZQ==?=\n\nx\n", 0);
    CHECK(j["subject"] == "Grüße");
    // raw 8-bit inside a Q word is in the word's charset
    j = message_to_json("Subject: =?iso-8859-1?Q?Fr\xF6sche?=\n\nx\n", 0);
    CHECK(j["subject"] == "Frösche");
    CHECK(j["headers"][0]["value"] == "Frösche");
}

TEST_CASE("slots bound concurrency per key") {
    temp_dir t;
    auto a = slot_guard::acquire(t.path, "k", 2, std::chrono::milliseconds(0));
    auto b = slot_guard::acquire(t.path, "k", 2, std::chrono::milliseconds(0));
    REQUIRE(a);
    REQUIRE(b);
    CHECK(a->slot() != b->slot());
    // flock is per open file description: a third holder (same or other process) must wait.
    CHECK_FALSE(slot_guard::acquire(t.path, "k", 2, std::chrono::milliseconds(50)));
    CHECK(slot_guard::acquire(t.path, "other", 2, std::chrono::milliseconds(0)));
    a.reset();
    CHECK(slot_guard::acquire(t.path, "k", 2, std::chrono::milliseconds(0)));
}
