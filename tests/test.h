/* test.h: the unit-test harness, after redis' testhelp.h.
 *
 *   test_cond("name of the check", expr);   prints ok/FAIL, counts
 *   test_close("what", got, want, rtol, atol) float check with a message
 *   return test_report();                    in main: summary, exit status
 */
#ifndef LORA_TEST_H
#define LORA_TEST_H
#include <math.h>
#include <stdio.h>
static int test_failed, test_passed;
#define test_cond(descr, _c) do { \
	if (_c) { test_passed++; } else { test_failed++; \
		printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, descr); } } while (0)
#define test_close(descr, got, want, rtol, atol) do { \
	double _g = (got), _w = (want); \
	int _ok = fabs(_g - _w) <= (atol) + (rtol) * fabs(_w); \
	if (!_ok) printf("      %s: got %.9g want %.9g\n", descr, _g, _w); \
	test_cond(descr, _ok); } while (0)
static inline int test_report(void)
{
	printf("%d passed, %d failed\n", test_passed, test_failed);
	return test_failed ? 1 : 0;
}
#endif
