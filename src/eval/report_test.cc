#include "eval/report.h"

#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"

namespace lmpress {
namespace {

CompareRow row(const std::string& label, uint64_t mib, double ppl) {
  CompareRow r;
  r.label = label;
  r.size_bytes = mib << 20;
  r.n_params = int64_t(mib) << 18;  // 32 bits per weight at 1 MiB per 2^18 params
  r.ppl = ppl;
  return r;
}

size_t count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) n++;
  return n;
}

// By hand: a (8 MiB, 10.0), b (4, 10.5), c (4, 11.0: b is as small and better),
// d (2, 12.0), e (6, 10.6: b is smaller and better). Front: d, b, a.
TEST(Report, ParetoFrontByHand) {
  const std::vector<CompareRow> rows{row("a", 8, 10.0), row("b", 4, 10.5), row("c", 4, 11.0), row("d", 2, 12.0),
                                     row("e", 6, 10.6)};
  EXPECT_EQ(pareto_front(rows), (std::vector<size_t>{3, 1, 0}));
  EXPECT_DOUBLE_EQ(rows[0].bits_per_weight(), 32.0);
}

TEST(Report, MarkdownJsonAndSvg) {
  std::vector<CompareRow> rows{row("f32", 8, 10.0), row("q4 <x>", 2, 10.4)};
  rows[1].dppl = 0.4, rows[1].dppl_err = 0.05, rows[1].kld = 0.0123, rows[1].kld_err = 0.0004;
  rows[1].same_top = 0.9, rows[1].same_top_err = 0.01;
  rows[0].task_acc["piqa"] = 0.6, rows[0].task_acc_err["piqa"] = 0.02;
  rows[1].macs = 7.3728e6, rows[1].weight_bytes = 3 << 19, rows[1].kv_bytes_per_position = 2304;
  rows[0].tg_ts = 50, rows[1].tg_ts = 125;
  const std::string md = compare_markdown(rows);
  EXPECT_NE(md.find("| f32 | 8.00 | 32.00 | 1.00 | 0.00 | 0.00 | 0 | 10.000 ± 0.000 | — | — | — | 60.00 ± 2.00 | — | 50.0 | 1.00 |"),
            std::string::npos) << md;
  EXPECT_NE(md.find("| q4 <x> | 2.00 | 32.00 | 4.00 | 7.37 | 1.50 | 2304 | 10.400"), std::string::npos) << md;
  EXPECT_NE(md.find("| 125.0 | 2.50 |"), std::string::npos) << md;
  EXPECT_NE(md.find("| +0.400 ± 0.050 | 0.01230 ± 0.00040 | 90.00 ± 1.00 | — |"), std::string::npos) << md;
  EXPECT_EQ(count(md, "\n"), 4u);
  const auto j = compare_json(rows);
  EXPECT_EQ(j.size(), 2u);
  EXPECT_DOUBLE_EQ(j[1]["kld"].get<double>(), 0.0123);
  EXPECT_DOUBLE_EQ(j[1]["compression"].get<double>(), 4.0);
  EXPECT_DOUBLE_EQ(j[1]["tg_speedup"].get<double>(), 2.5);
  EXPECT_DOUBLE_EQ(j[1]["macs_per_token"].get<double>(), 7.3728e6);
  EXPECT_FALSE(j[0].contains("kld"));
  EXPECT_DOUBLE_EQ(j[0]["tasks"]["piqa"]["acc"].get<double>(), 0.6);
  const std::string svg = compare_svg(rows, "t & t");
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  EXPECT_EQ(count(svg, "<g class=\"label\">"), 2u);
  EXPECT_NE(svg.find("q4 &lt;x&gt;"), std::string::npos);  // labels escaped
  EXPECT_NE(svg.find("t &amp; t"), std::string::npos);
}

TEST(Report, MethodsFromFileNames) {
  EXPECT_EQ(guess_method("m/f32.gguf", 32, true), "original");
  EXPECT_EQ(guess_method("m/f16.gguf", 16, false), "float");
  EXPECT_EQ(guess_method("m/q4_k_m.gguf", 4.9, false), "rtn");
  EXPECT_EQ(guess_method("m/Q4_K_M-GPTQ.gguf", 4.9, false), "gptq");
  EXPECT_EQ(guess_method("m/int4-g32-gptq/", 5.1, false), "gptq");
  EXPECT_EQ(guess_method("m/q4_0-awq.gguf", 4.5, false), "awq");
  EXPECT_EQ(guess_method("m/wanda-0.5.gguf", 16, false), "pruned");
  EXPECT_EQ(guess_method("m/sparsegpt-2of4.gguf", 8.5, false), "pruned");
  CompareRow r = row("x", 1, 10);
  r.method = "bogus";
  EXPECT_THROW(compare_svg({r}, "t"), Error);
}

TEST(Report, HtmlHoldsTheTableAndEveryPlot) {
  std::vector<CompareRow> rows{row("f32", 8, 10.0), row("q4 <x>", 2, 10.4)};
  rows[1].method = "gptq";
  rows[1].dppl = 0.4, rows[1].dppl_err = 0.05, rows[1].kld = 0.0123, rows[1].kld_err = 0.0004;
  rows[0].tg_ts = 50, rows[1].tg_ts = 125;
  const std::string html = compare_html(rows, "r & d");
  EXPECT_EQ(html.rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_EQ(count(html, "<svg"), 4u);  // PPL and speed against size, ΔPPL and KLD against bits per weight
  EXPECT_EQ(count(html, "<tr>"), 3u);
  EXPECT_NE(html.find("<td>q4 &lt;x&gt;</td>"), std::string::npos);
  EXPECT_NE(html.find("<title>r &amp; d</title>"), std::string::npos);
  EXPECT_EQ(count(html, "http"), count(html, "http://www.w3.org/2000/svg")) << "nothing fetched from the network";
  EXPECT_EQ(count(html, "src="), 0u);
}

}  // namespace
}  // namespace lmpress
