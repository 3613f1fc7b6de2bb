// expect: xoptim: sparse_signsgd's table must be a float or double tensor
#include <vector>

#include <xoptim/optim/sparse.hpp>
int main()
{
    std::vector<int> table(12);  // 4 rows of 3, but integers
    std::vector<int> rows(3);
    xoptim::sparse_signsgd emb;
    emb.prepare(table, {1}, rows);
}
