/* embedding_impl.h -- the embedding's backward pass written once over `real`
 * (a template: see for_each_dtype.h; instantiated by embedding.c). */

TB_CLONES void FN(tb_embedding_backward)(long n, long E, const int64_t *ids, const real *grad, real *dweight)
{
    for (long k = 0; k < n; k++) {
        real *row = dweight + ids[k] * E;   /* the row that ids[k] read */
        const real *g = grad + k * E;       /* the gradient on what it read */
        for (long e = 0; e < E; e++) row[e] += g[e];
    }
}
