// The compare report's pictures as a reader sees them: each plot rendered to
// PNG by librsvg (rsvg-convert), one label at a time, and the ink of no two
// labels may touch.
#include <gtest/gtest.h>
#include <zlib.h>

#include <cstring>
#include <fstream>
#include <regex>

#include "core/mapped_file.h"
#include "eval/report.h"
#include "test_util.h"

namespace lmpress {
namespace {

struct Ink {
  int x0 = 1 << 30, y0 = 1 << 30, x1 = -1, y1 = -1;
  bool empty() const { return x1 < 0; }
  bool touches(const Ink& o) const { return x0 <= o.x1 && o.x0 <= x1 && y0 <= o.y1 && o.y0 <= y1; }
};

uint32_t be32(const uint8_t* p) { return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3]; }

// The box of the non-white pixels of an 8-bit RGB or RGBA, non-interlaced PNG
// (what rsvg-convert writes), decoded with zlib and the PNG row filters.
Ink ink_box(const std::string& png) {
  const auto* d = reinterpret_cast<const uint8_t*>(png.data());
  EXPECT_GT(png.size(), 33u);
  EXPECT_EQ(std::memcmp(d, "\x89PNG\r\n\x1a\n", 8), 0);
  int w = 0, h = 0, ch = 0;
  std::string idat;
  for (size_t at = 8; at + 12 <= png.size();) {
    const uint32_t n = be32(d + at);
    const std::string type(png.data() + at + 4, 4);
    if (type == "IHDR") {
      w = int(be32(d + at + 8)), h = int(be32(d + at + 12));
      EXPECT_EQ(d[at + 16], 8) << "bit depth";
      ch = d[at + 17] == 6 ? 4 : d[at + 17] == 2 ? 3 : 0;
      EXPECT_NE(ch, 0) << "colour type " << int(d[at + 17]);
      EXPECT_EQ(d[at + 20], 0) << "interlaced";
    } else if (type == "IDAT") {
      idat.append(png.data() + at + 8, n);
    }
    at += 12 + n;
  }
  const size_t stride = size_t(w) * ch;
  std::vector<uint8_t> raw((stride + 1) * size_t(h));
  uLongf len = raw.size();
  EXPECT_EQ(uncompress(raw.data(), &len, reinterpret_cast<const Bytef*>(idat.data()), idat.size()), Z_OK);
  std::vector<uint8_t> img(stride * size_t(h)), prev(stride, 0);
  Ink box;
  for (int y = 0; y < h; y++) {
    const uint8_t f = raw[size_t(y) * (stride + 1)];
    const uint8_t* src = &raw[size_t(y) * (stride + 1) + 1];
    uint8_t* row = &img[size_t(y) * stride];
    for (size_t i = 0; i < stride; i++) {
      const int a = i >= size_t(ch) ? row[i - ch] : 0, b = prev[i], c = i >= size_t(ch) ? prev[i - ch] : 0;
      int pred = 0;
      if (f == 1) pred = a;
      else if (f == 2) pred = b;
      else if (f == 3) pred = (a + b) / 2;
      else if (f == 4) {
        const int p = a + b - c, pa = std::abs(p - a), pb = std::abs(p - b), pc = std::abs(p - c);
        pred = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      }
      row[i] = uint8_t(src[i] + pred);
    }
    std::memcpy(prev.data(), row, stride);
    for (int x = 0; x < w; x++) {
      const uint8_t* px = row + size_t(x) * ch;
      if (px[0] < 245 || px[1] < 245 || px[2] < 245)
        box.x0 = std::min(box.x0, x), box.y0 = std::min(box.y0, y), box.x1 = std::max(box.x1, x), box.y1 = std::max(box.y1, y);
    }
  }
  return box;
}

// Each label's text alone (its leader line left out) rendered: its ink box.
std::vector<Ink> label_boxes(const std::string& svg, const std::string& dir) {
  const size_t body = svg.find("<rect width=");
  const std::string head = svg.substr(0, svg.find('\n', body) + 1);
  std::vector<Ink> boxes;
  const std::regex text(R"(<g class="label">(?:<line[^>]*/>)?(<text[^>]*>[^<]*</text>)</g>)");
  int k = 0;
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), text); it != std::sregex_iterator(); ++it, ++k) {
    const std::string path = dir + "/label" + std::to_string(k);
    std::ofstream(path + ".svg") << head << (*it)[1] << "\n</svg>\n";
    const auto r = test::shell("rsvg-convert -b white -o " + path + ".png " + path + ".svg 2>&1");
    EXPECT_EQ(r.status, 0) << r.out;
    boxes.push_back(ink_box(read_text_file(path + ".png")));
    EXPECT_FALSE(boxes.back().empty()) << (*it)[1];
  }
  return boxes;
}

// Pairs of labels whose ink touches.
std::vector<std::pair<size_t, size_t>> overlaps(const std::vector<Ink>& b) {
  std::vector<std::pair<size_t, size_t>> out;
  for (size_t i = 0; i < b.size(); i++)
    for (size_t j = i + 1; j < b.size(); j++)
      if (b[i].touches(b[j])) out.emplace_back(i, j);
  return out;
}

CompareRow file(const std::string& label, const std::string& method, double mib, double bpw, double ppl, double kld,
                double tg) {
  CompareRow r;
  r.label = label, r.method = method;
  r.size_bytes = uint64_t(mib * (1 << 20));
  r.n_params = int64_t(double(r.size_bytes) * 8 / bpw);
  r.ppl = ppl, r.tg_ts = tg;
  if (method != "original") r.dppl = ppl - 95.99, r.dppl_err = 0.3, r.kld = kld, r.kld_err = kld / 20;
  return r;
}

TEST(ReportRender, NoTwoLabelsOverlapOnTheDemosElevenFiles) {
  if (test::shell("command -v rsvg-convert").status != 0) GTEST_SKIP() << "rsvg-convert (librsvg2-bin) is not installed";
  // The demo's files of lmp-8m: five labels used to land on one spot around 5 MiB.
  const std::vector<CompareRow> rows{
      file("f32", "original", 29.26, 32, 95.99, 0, 61),      file("f16", "float", 14.63, 16, 95.99, 1e-7, 98),
      file("q4_k_m", "rtn", 5.31, 5.8, 98.93, 0.0312, 180),  file("q4_k_m-gptq", "gptq", 5.31, 5.8, 97.81, 0.0203, 181),
      file("q4_k_m-awq", "awq", 5.31, 5.8, 98.12, 0.0236, 179), file("q3_k_m", "rtn", 4.36, 4.77, 108.2, 0.1071, 170),
      file("q3_k_m-gptq", "gptq", 4.36, 4.77, 103.5, 0.0712, 171), file("q3_k_m-awq", "awq", 4.36, 4.77, 104.9, 0.0801, 169),
      file("int4-g32-gptq", "gptq", 5.62, 6.1, 97.93, 0.0215, 150), file("wanda-50%", "pruned", 5.1, 5.6, 131.4, 0.31, 175),
      file("sparsegpt-2of4", "pruned", 5.4, 5.9, 122.9, 0.24, 205)};
  const auto plots = compare_plots(rows, "lmp-8m: perplexity against size");
  ASSERT_EQ(plots.size(), 4u);
  const std::string dir = test::temp_dir();
  for (const auto& [name, svg] : plots) {
    const auto boxes = label_boxes(svg, dir);
    ASSERT_EQ(boxes.size(), rows.size() - (name.find("bits per weight") != std::string::npos ? 1 : 0)) << name;
    for (const auto& [i, j] : overlaps(boxes)) ADD_FAILURE() << name << ": labels " << i << " and " << j << " overlap";
    for (const Ink& b : boxes) EXPECT_TRUE(b.x0 >= 0 && b.y0 >= 0) << name;
  }
  // The check sees an overlap when there is one: two labels drawn at one place.
  const std::string& svg = plots[0].second;
  const size_t at = svg.find("<g class=\"label\">");
  const std::string twice = svg.substr(0, at) + svg.substr(at, svg.find("</g>", at) + 5 - at) +
                            std::regex_replace(svg.substr(at, svg.find("</g>", at) + 5 - at), std::regex(">[^<]+</text>"),
                                               ">XXXXXXXXXX</text>") +
                            "</svg>\n";
  EXPECT_EQ(overlaps(label_boxes(twice, dir)).size(), 1u);
}

}  // namespace
}  // namespace lmpress
