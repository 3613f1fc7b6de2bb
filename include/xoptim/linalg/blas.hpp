// The few BLAS calls xoptim makes, overloaded on float and double (cblas; link BLAS,
// e.g. OpenBLAS, through the xoptim::blas target). Row-major throughout.
#ifndef XOPTIM_LINALG_BLAS_HPP
#define XOPTIM_LINALG_BLAS_HPP

#include <cblas.h>

namespace xoptim::blas
{
    // C = alpha * A * A^T + beta * C, C (n x n) upper triangle only; A is n x k.
    inline void syrk(int n, int k, float alpha, const float* a, float beta, float* c)
    {
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasNoTrans, n, k, alpha, a, k, beta, c, n);
    }

    inline void syrk(int n, int k, double alpha, const double* a, double beta, double* c)
    {
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, n, k, alpha, a, k, beta, c, n);
    }

    // C = alpha * S * B + beta * C with S (m x m) symmetric, read from its upper
    // triangle; B and C are m x n.
    inline void symm(int m, int n, float alpha, const float* s, const float* b, float beta, float* c)
    {
        cblas_ssymm(CblasRowMajor, CblasLeft, CblasUpper, m, n, alpha, s, m, b, n, beta, c, n);
    }

    inline void symm(int m, int n, double alpha, const double* s, const double* b, double beta, double* c)
    {
        cblas_dsymm(CblasRowMajor, CblasLeft, CblasUpper, m, n, alpha, s, m, b, n, beta, c, n);
    }
}

#endif
