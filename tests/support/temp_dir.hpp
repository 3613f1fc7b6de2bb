// A fixture giving each test a scratch directory, removed afterwards.
#ifndef XOPTIM_TESTS_SUPPORT_TEMP_DIR_HPP
#define XOPTIM_TESTS_SUPPORT_TEMP_DIR_HPP

#include <filesystem>
#include <random>
#include <string>

#include <gtest/gtest.h>

namespace xoptim_test
{
    class temp_dir_test : public ::testing::Test
    {
    protected:
        void SetUp() override
        {
            std::random_device random;
            dir_ = std::filesystem::temp_directory_path() / ("xoptim_test_" + std::to_string(random()));
            std::filesystem::create_directories(dir_);
        }

        void TearDown() override
        {
            std::filesystem::remove_all(dir_);
        }

        std::filesystem::path dir_;
    };
}

#endif
