// A checkpoint written again with its metadata edited: what a test or fuzz target needs
// to reach the checks behind the checksums (the edit is what the load must find, not
// damage), or to make a file as an older format wrote it.
#ifndef XOPTIM_TESTS_SUPPORT_REWRITE_HPP
#define XOPTIM_TESTS_SUPPORT_REWRITE_HPP

#include <functional>
#include <map>
#include <string>
#include <vector>

#include <xoptim/io/checkpoint.hpp>

namespace xoptim_test
{
    using metadata = std::map<std::string, std::string>;

    struct rewrite_options
    {
        bool sign_metadata = true;      // recompute the metadata's checksum
        bool tensor_checksums = false;  // recompute every tensor's checksum first
    };

    // Throws what the safetensors reader and writer throw for a file they refuse.
    inline std::string rewritten(const std::vector<unsigned char>& file, const std::function<void(metadata&)>& edit,
                                 const rewrite_options& o = {})
    {
        const auto f = xoptim::io::safetensors_file::parse(file, "rewritten");
        metadata meta = f.metadata();
        edit(meta);
        xoptim::io::safetensors_writer w;
        for (const auto& t : f.tensors())
        {
            if (o.tensor_checksums)
            {
                meta[xoptim::detail::checksum_key(t.name)] = xoptim::detail::hex(xoptim::io::xxh64(f.data(t), t.bytes()));
            }
            w.add(t.name, t.dtype, t.shape, f.data(t), t.bytes());
        }
        if (o.sign_metadata)
        {
            xoptim::detail::sign_metadata(meta);
        }
        for (const auto& [k, v] : meta)
        {
            w.metadata(k, v);
        }
        return w.serialize();
    }
}

#endif
