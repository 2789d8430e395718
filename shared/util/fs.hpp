// fs: durable file operations (the "nothing lost" primitives).
//
// Promises: write_file_durable() leaves either the old file or the complete new one, never a
// torn file: it writes a temporary in the same directory, fsyncs it, renames it into place
// and fsyncs the directory. Errors throw std::system_error naming the path and the call.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

namespace mx::util {

void fsync_dir(const std::filesystem::path& dir);
void write_file_durable(const std::filesystem::path& path, std::string_view data,
                        unsigned mode = 0640);
std::string read_file(const std::filesystem::path& path);
// rename(2) then fsync of the destination directory (and the source's, when different).
void rename_durable(const std::filesystem::path& from, const std::filesystem::path& to);
// mkdir -p with a mode for newly created components.
void make_dirs(const std::filesystem::path& dir, unsigned mode = 0750);

}  // namespace mx::util
