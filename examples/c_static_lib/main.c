/* Runs the ternary MLP that `shrink compile` wrote as build/libmlp.a + build/mlp.h.
 *
 * Everything about the model comes from the header: buffer sizes, the scratch size and
 * alignment, tensor names and dims. There is no shrink runtime to link; the library has no
 * imports, so this file and libc are all the program needs.
 *
 * usage: main [INPUT]   INPUT: the raw input tensor (little-endian f32, mlp_INPUT_BYTES[0]
 *                       bytes); without it a built-in deterministic input is used.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mlp.h"

/* The printing below is written for one f32 input and one f32 output; a different model
 * must fail to compile here rather than print garbage. */
_Static_assert(mlp_NUM_INPUTS == 1, "this example feeds one input");
_Static_assert(mlp_NUM_OUTPUTS == 1, "this example prints one output");
_Static_assert(mlp_INPUT_0_DTYPE == 1 && mlp_OUTPUT_0_DTYPE == 1, "f32 tensors expected");

/* The scratch is a compile-time size, so it can live in static storage with the alignment
 * the header asks for: no allocation at all for the kernel's own memory. */
static _Alignas(mlp_SCRATCH_ALIGN) unsigned char scratch[mlp_SCRATCH_BYTES > 0 ? mlp_SCRATCH_BYTES : 1];

static void print_dims(const size_t *dims, size_t rank) {
  printf("[");
  for (size_t d = 0; d < rank; d++) printf(d ? ", %zu" : "%zu", dims[d]);
  printf("]");
}

static int read_input(const char *path, void *buf, size_t bytes) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "main: cannot open %s\n", path);
    return -1;
  }
  size_t got = fread(buf, 1, bytes, f);
  int extra = fgetc(f) != EOF; /* a longer file is the wrong tensor, not a prefix of it */
  fclose(f);
  if (got != bytes || extra) {
    fprintf(stderr, "main: %s must hold exactly %zu bytes (input '%s')\n", path, bytes,
            mlp_INPUT_NAMES[0]);
    return -1;
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc > 2) {
    fprintf(stderr, "usage: %s [INPUT]\n", argv[0]);
    return 2;
  }
  /* Tensors need no alignment (the header says so), so malloc is enough. */
  float *x = malloc(mlp_INPUT_BYTES[0]);
  float *y = malloc(mlp_OUTPUT_BYTES[0]);
  if (!x || !y) {
    fprintf(stderr, "main: out of memory\n");
    return 2;
  }
  size_t n_in = mlp_INPUT_BYTES[0] / sizeof(float);
  if (argc == 2) {
    if (read_input(argv[1], x, mlp_INPUT_BYTES[0]) != 0) return 2;
    printf("input '%s' ", mlp_INPUT_NAMES[0]);
    print_dims(mlp_INPUT_0_DIMS, mlp_INPUT_0_RANK);
    printf(" from %s\n", argv[1]);
  } else {
    /* A fixed pattern in [-1, 1), different in every row: the same numbers on every machine. */
    for (size_t i = 0; i < n_in; i++) x[i] = (float)((int)(i * 7 % 23) - 11) / 11.0f;
    printf("input '%s' ", mlp_INPUT_NAMES[0]);
    print_dims(mlp_INPUT_0_DIMS, mlp_INPUT_0_RANK);
    printf(" built in\n");
  }

  const void *inputs[mlp_NUM_INPUTS] = {x};
  void *outputs[mlp_NUM_OUTPUTS] = {y};
  int32_t status = mlp_run(inputs, outputs, scratch);
  if (status != 0) {
    fprintf(stderr, "main: mlp_run returned %d\n", (int)status);
    return 1;
  }

  /* One row per line along the last axis; %.9g prints every float exactly. */
  size_t rank = mlp_OUTPUT_0_RANK;
  size_t row = rank > 0 ? mlp_OUTPUT_0_DIMS[rank - 1] : 1;
  size_t n_out = mlp_OUTPUT_BYTES[0] / sizeof(float);
  printf("output '%s' ", mlp_OUTPUT_NAMES[0]);
  print_dims(mlp_OUTPUT_0_DIMS, rank);
  printf(":\n");
  for (size_t i = 0; i < n_out; i++)
    printf("%s%.9g%s", i % row ? " " : "  ", (double)y[i], (i + 1) % row && i + 1 < n_out ? "" : "\n");
  free(x);
  free(y);
  return 0;
}
