// spawn: runs a program without a shell, with a time limit, and collects what it prints.
//
// What it is: run_program() forks, optionally becomes another account (setgroups + setgid +
// setuid, for "can this account read that file?" questions), execs argv with stdin on
// /dev/null, and reads stdout and stderr until the program ends or the deadline passes (then
// it is killed with SIGKILL and reaped).
// Promises: never throws for a program that cannot run — the result says so (status -1 and
// `error`); output is bounded (1 MiB per stream); the child is always reaped.
// Security: no shell, so arguments are never re-parsed; everything the child needs (argv,
// group list) is prepared before fork(), after it only async-signal-safe calls run.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace mx::util {

struct run_options {
    std::string cwd;  // empty: inherit
    std::chrono::milliseconds timeout = std::chrono::seconds(10);
    // Run as this uid/gid with these supplementary groups (needs root); nullopt: as we are.
    std::optional<uid_t> uid;
    gid_t gid = 0;
    std::vector<gid_t> groups;
};

struct run_result {
    int status = -1;  // exit status; -1 when it could not run, was killed or timed out
    bool timed_out = false;
    std::string out;    // stdout
    std::string err;    // stderr
    std::string error;  // why it could not run (fork/pipe failure), empty otherwise
};

run_result run_program(const std::vector<std::string>& argv, const run_options& o = {});

}  // namespace mx::util
