// libFuzzer target for the safetensors reader: any input must either parse or throw a
// std::exception; sanitizers catch reads out of bounds and undefined behaviour. A file that
// parses is written back and read again, and must come back the same.
#include <xoptim/io/safetensors.hpp>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <vector>

using xoptim::io::safetensors_file;
using xoptim::io::safetensors_writer;
using xoptim::io::st_tensor_info;

namespace
{
    // Our writer refuses empty names, which the format allows and the reader accepts.
    bool writable(const safetensors_file& file)
    {
        for (const st_tensor_info& t : file.tensors())
        {
            if (t.name.empty())
            {
                return false;
            }
        }
        return true;
    }

    void check_round_trip(const safetensors_file& file)
    {
        safetensors_writer writer;
        for (const st_tensor_info& t : file.tensors())
        {
            writer.add(t.name, t.dtype, t.shape, file.data(t), t.bytes());
        }
        for (const auto& [key, value] : file.metadata())
        {
            writer.metadata(key, value);
        }
        const std::string bytes = writer.serialize();
        const safetensors_file again =
            safetensors_file::parse(std::vector<unsigned char>(bytes.begin(), bytes.end()), "round trip");
        if (again.metadata() != file.metadata() || again.tensors().size() != file.tensors().size())
        {
            std::abort();
        }
        for (std::size_t i = 0; i < file.tensors().size(); ++i)
        {
            const st_tensor_info& a = file.tensors()[i];
            const st_tensor_info& b = again.tensors()[i];
            if (a.name != b.name || a.dtype != b.dtype || a.shape != b.shape || a.bytes() != b.bytes()
                || (a.bytes() != 0 && std::memcmp(file.data(a), again.data(b), a.bytes()) != 0))
            {
                std::abort();
            }
        }
    }
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    std::optional<safetensors_file> file;
    try
    {
        file = safetensors_file::parse(std::vector<unsigned char>(data, data + size), "fuzz input");
    }
    catch (const std::exception&)
    {
        return 0;
    }
    // Outside the try: an exception here is a bug, and libFuzzer reports it as a crash.
    if (writable(*file))
    {
        check_round_trip(*file);
    }
    return 0;
}
