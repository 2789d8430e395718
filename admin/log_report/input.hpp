// input: reads log lines from files (plain or gzip), stdin, and followed files, in big blocks.
//
// Promises: lines are handed out as string_views into a 4 MiB buffer (valid only during the
// callback), without the trailing "\n" or "\r\n". A line longer than the buffer is cut: its
// first 4 MiB are handed out, the rest is skipped (so memory never grows with hostile input).
// gzip is detected by its magic bytes, not the file name. order_rotated() puts rotated sets in
// chronological order (maillog.3.gz, maillog.2.gz, maillog.1, maillog; dated suffixes by date).
// follow_file() keeps reading a file like `tail -F`: it notices rotation (new inode) and
// truncation, finishes the old file first, then continues with the new one.
//
// Security: file names come from the command line (the administrator); file contents are
// untrusted and only ever handed to the parsers as bounded views.
#pragma once

#include <atomic>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace mx::logreport {

class byte_source {
  public:
    virtual ~byte_source() = default;
    // Bytes read, 0 at (current) end of input, -1 on error (message in error()).
    virtual long read(char* buf, std::size_t n) = 0;
    virtual std::string error() const = 0;
};

// "-" is stdin (gzip or plain). Throws std::runtime_error when the file cannot be opened.
std::unique_ptr<byte_source> open_source(const std::string& path);

class line_splitter {
  public:
    static constexpr std::size_t buffer_size = 4u << 20;
    line_splitter();
    // Feeds every complete line of `src` to fn until the source reports end of input; with
    // `flush` a final line without "\n" is handed out too, otherwise it is kept for the next
    // call (follow mode: the writer has not finished the line yet). False on a read error.
    bool pump(byte_source& src, const std::function<void(std::string_view)>& fn, bool flush);
    // Hands out a kept partial line (the followed file was rotated away).
    void flush(const std::function<void(std::string_view)>& fn);

  private:
    std::unique_ptr<char[]> buf_;
    std::size_t start_ = 0;
    std::size_t end_ = 0;
    bool skipping_ = false;  // inside the over-long tail of a cut line
};

// Chronological order of a rotated set (see above); unrelated files keep their given order.
std::vector<std::string> order_rotated(std::vector<std::string> files);

// Reads `path` from the start and keeps following it until `stop` becomes true. `tick` runs
// about every `tick_seconds` (0: never). Throws if the file cannot be opened at the start.
void follow_file(const std::string& path, const std::function<void(std::string_view)>& fn,
                 const std::atomic<bool>& stop, const std::function<void()>& tick,
                 double tick_seconds);

}  // namespace mx::logreport
