// A program whose object of static storage duration, made before xoptim's thread pool,
// steps on a thread of its own and joins it in its destructor: at exit that thread is
// still stepping while the statics are destroyed, and must finish. (The pool was a
// function-local static, made on the first step and so destroyed before such an object:
// its workers stopped with the step half run, and the program hung at exit in about 3
// runs of 10.) Each of 20 forked children runs the program; every one must exit with 0
// within 20 s. Not a GoogleTest program: the object must come before the pool.
#include <xoptim/optim/adam.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

namespace
{
    struct background_trainer
    {
        xoptim::adamw opt;
        std::vector<float> p = std::vector<float>(std::size_t(1) << 20, 1.0f);
        std::vector<float> g = std::vector<float>(std::size_t(1) << 20, 0.5f);
        std::atomic<bool> go{false}, stop{false};
        std::atomic<long> steps{0};
        std::thread stepping;

        background_trainer()
            : stepping([this] {
                  while (!go)
                  {
                      std::this_thread::yield();
                  }
                  while (!stop)
                  {
                      opt.step(p, g);
                      ++steps;
                  }
              })
        {
        }

        ~background_trainer()
        {
            stop = true;
            stepping.join();
        }
    };

    // The child: the object first (made whole before its thread's first step makes the
    // pool), then steps on two threads, then exit with the thread in the middle of a step.
    [[noreturn]] void child()
    {
        xoptim::set_num_threads(2);
        xoptim::set_parallel_threshold(1024);
        static background_trainer trainer;
        trainer.go = true;
        while (trainer.steps < 3)
        {
            std::this_thread::yield();
        }
        std::exit(0);
    }
}

int main()
{
    for (int run = 0; run < 20; ++run)
    {
        const pid_t pid = ::fork();
        if (pid < 0)
        {
            std::perror("fork");
            return 1;
        }
        if (pid == 0)
        {
            child();
        }
        int status = 0;
        pid_t done = 0;
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
        while ((done = ::waitpid(pid, &status, WNOHANG)) == 0 && std::chrono::steady_clock::now() < deadline)
        {
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        if (done == 0)
        {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, &status, 0);
            std::printf("run %d: the program hung at exit (killed after 20 s)\n", run);
            return 1;
        }
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        {
            std::printf("run %d: the program ended with status %d\n", run, status);
            return 1;
        }
    }
    std::printf("20 runs exited while a thread was stepping\n");
    return 0;
}
