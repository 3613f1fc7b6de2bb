// The few BLAS calls xoptim makes, overloaded on float and double (cblas; link a CBLAS
// such as OpenBLAS). `layout` says how the matrices lie in memory; symmetric matrices
// are always stored as their row-major upper triangle (the column-major lower one).
#ifndef XOPTIM_LINALG_BLAS_HPP
#define XOPTIM_LINALG_BLAS_HPP

#include <cblas.h>

namespace xoptim::blas
{
    enum class layout
    {
        row_major,
        col_major
    };

    namespace detail
    {
        inline CBLAS_ORDER order(layout l) noexcept
        {
            return l == layout::row_major ? CblasRowMajor : CblasColMajor;
        }

        inline CBLAS_UPLO triangle(layout l) noexcept
        {
            return l == layout::row_major ? CblasUpper : CblasLower;
        }
    }

    // C = alpha * A * A^T + beta * C: C is n x n (one triangle written), A is n x k with
    // leading dimension lda.
    inline void syrk(layout l, int n, int k, float alpha, const float* a, int lda, float beta, float* c)
    {
        cblas_ssyrk(detail::order(l), detail::triangle(l), CblasNoTrans, n, k, alpha, a, lda, beta, c, n);
    }

    inline void syrk(layout l, int n, int k, double alpha, const double* a, int lda, double beta, double* c)
    {
        cblas_dsyrk(detail::order(l), detail::triangle(l), CblasNoTrans, n, k, alpha, a, lda, beta, c, n);
    }

    // C = alpha * S * B + beta * C: S is m x m symmetric (one triangle read), B and C are
    // m x n with leading dimension ld.
    inline void symm(layout l, int m, int n, float alpha, const float* s, const float* b, float beta, float* c, int ld)
    {
        cblas_ssymm(detail::order(l), CblasLeft, detail::triangle(l), m, n, alpha, s, m, b, ld, beta, c, ld);
    }

    inline void symm(layout l, int m, int n, double alpha, const double* s, const double* b, double beta, double* c,
                     int ld)
    {
        cblas_dsymm(detail::order(l), CblasLeft, detail::triangle(l), m, n, alpha, s, m, b, ld, beta, c, ld);
    }

    // C = alpha * op(A) * op(B) + beta * C, row-major: op(A) is m x k, op(B) is k x n, C is
    // m x n; op transposes where asked. lda, ldb and ldc are the rows' strides, so each may
    // be a block of a wider matrix (a head's columns of a fused projection).
    inline void gemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a, int lda,
                     const float* b, int ldb, float beta, float* c, int ldc)
    {
        cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, m, n, k,
                    alpha, a, lda, b, ldb, beta, c, ldc);
    }

    inline void gemm(bool trans_a, bool trans_b, int m, int n, int k, double alpha, const double* a, int lda,
                     const double* b, int ldb, double beta, double* c, int ldc)
    {
        cblas_dgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, m, n, k,
                    alpha, a, lda, b, ldb, beta, c, ldc);
    }

    // The same with packed matrices.
    template <class T>
    void gemm(bool trans_a, bool trans_b, int m, int n, int k, T alpha, const T* a, const T* b, T beta, T* c)
    {
        gemm(trans_a, trans_b, m, n, k, alpha, a, trans_a ? m : k, b, trans_b ? k : n, beta, c, n);
    }
}

#endif
