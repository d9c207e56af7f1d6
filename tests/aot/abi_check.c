/* ABI checks of one AOT-compiled model with prefix `m` (tests/aot.rs builds it):
 *   abi_check INPUTS EXPECTED_STATUS [EXPECTED_OUTPUTS]
 * INPUTS holds every input (dense bytes, header order). The program runs the kernel
 *   1. on plain buffers, and checks the status (and the outputs against EXPECTED_OUTPUTS);
 *   2. with every input, output and the scratch ending exactly at a PROT_NONE page, then
 *      starting exactly after one: a read or write outside any buffer faults;
 *   3. on two threads at once, 200 calls each with their own outputs and scratch.
 * Every run must give the same status and outputs. Exit 0 when all hold; prints what failed. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "m.h"

static int32_t want_status;
static unsigned char *want[m_NUM_OUTPUTS + 1];
static const void *inputs[m_NUM_INPUTS + 1];

static int fail(const char *what) {
  fprintf(stderr, "abi_check: %s\n", what);
  exit(1);
}

/* `n` bytes ending at (at_end) or starting after (!at_end) an inaccessible page. */
static void *guarded(size_t n, int at_end) {
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  size_t span = (n + page - 1) / page * page;
  unsigned char *m = mmap(NULL, span + 2 * page, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) fail("mmap");
  if (mprotect(m, page, PROT_NONE) || mprotect(m + page + span, page, PROT_NONE)) fail("mprotect");
  return at_end ? m + page + span - n : m + page;
}

/* Runs the kernel on fresh outputs and scratch from `alloc`; checks status and outputs. */
static void run_and_check(void *(*alloc)(size_t, int), int at_end, const char *how) {
  void *outs[m_NUM_OUTPUTS + 1];
  const void *ins[m_NUM_INPUTS + 1];
  for (int i = 0; i < (int)m_NUM_INPUTS; i++) {
    void *b = alloc(m_INPUT_BYTES[i], at_end);
    memcpy(b, inputs[i], m_INPUT_BYTES[i]);
    ins[i] = b;
  }
  for (int k = 0; k < (int)m_NUM_OUTPUTS; k++) outs[k] = alloc(m_OUTPUT_BYTES[k], at_end);
  void *scratch = alloc(m_SCRATCH_BYTES, at_end);
  int32_t rc = m_run(ins, outs, scratch);
  if (rc != want_status) {
    fprintf(stderr, "abi_check: %s: status %d, expected %d\n", how, rc, want_status);
    exit(1);
  }
  if (rc == 0)
    for (int k = 0; k < (int)m_NUM_OUTPUTS; k++)
      if (want[k] && memcmp(outs[k], want[k], m_OUTPUT_BYTES[k])) {
        fprintf(stderr, "abi_check: %s: output %d differs\n", how, k);
        exit(1);
      }
}

static void *plain(size_t n, int at_end) {
  (void)at_end;
  void *b = calloc(1, n ? n : 1);
  if (!b) fail("out of memory");
  return b;
}

static void *worker(void *arg) {
  (void)arg;
  for (int i = 0; i < 200; i++) run_and_check(plain, 0, "thread");
  return NULL;
}

static unsigned char *read_file(const char *path, size_t n) {
  FILE *f = fopen(path, "rb");
  if (!f) fail("cannot open a data file");
  unsigned char *b = malloc(n ? n : 1);
  if (!b || fread(b, 1, n, f) != n) fail("short data file");
  fclose(f);
  return b;
}

int main(int argc, char **argv) {
  if (argc != 3 && argc != 4) fail("usage: abi_check INPUTS EXPECTED_STATUS [EXPECTED_OUTPUTS]");
  size_t in_total = 0, out_total = 0;
  for (int i = 0; i < (int)m_NUM_INPUTS; i++) in_total += m_INPUT_BYTES[i];
  for (int k = 0; k < (int)m_NUM_OUTPUTS; k++) out_total += m_OUTPUT_BYTES[k];
  unsigned char *all_in = read_file(argv[1], in_total);
  for (int i = 0, at = 0; i < (int)m_NUM_INPUTS; at += (int)m_INPUT_BYTES[i], i++) inputs[i] = all_in + at;
  want_status = atoi(argv[2]);
  if (argc == 4) {
    unsigned char *all_out = read_file(argv[3], out_total);
    for (int k = 0, at = 0; k < (int)m_NUM_OUTPUTS; at += (int)m_OUTPUT_BYTES[k], k++) want[k] = all_out + at;
  }
  run_and_check(plain, 0, "plain buffers");
  run_and_check(guarded, 1, "buffers ending at a guard page");
  run_and_check(guarded, 0, "buffers starting after a guard page");
  pthread_t t[2];
  for (int i = 0; i < 2; i++)
    if (pthread_create(&t[i], NULL, worker, NULL)) fail("pthread_create");
  for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
  printf("abi_check: status %d on plain, guarded and threaded runs\n", want_status);
  return 0;
}
