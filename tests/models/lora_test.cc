// Note [LoRA in Attention]: adapters add (alpha/rank) B A x to the four projections, leave the
// UNet's state dict alone, start at B = 0, and refuse weights that do not fit.
#include "models/lora.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include <algorithm>
#include <cstdio>

#include "core/error.h"
#include "models/attention.h"
#include "models/unet.h"
#include "test_util.h"

namespace xltune {
namespace {

const char* kTinyUNet = R"({"block_out_channels": [8, 16], "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
  "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"], "layers_per_block": 1, "attention_head_dim": [2, 2],
  "cross_attention_dim": 12, "norm_num_groups": 4, "use_linear_projection": true, "addition_embed_type": "text_time",
  "addition_time_embed_dim": 4, "projection_class_embeddings_input_dim": 32})";

UNet random_unet() {
  UNet unet(UNetConfig::from_json_text(kTinyUNet, "tiny"), at::TensorOptions().dtype(at::kFloat));
  at::NoGradGuard no_grad;
  at::manual_seed(0);
  for (auto& p : unet->parameters()) p.normal_(0, 0.2);
  return unet;
}

TEST(Lora, AdaptsEveryAttentionProjectionAndLeavesTheStateDictAlone) {
  UNet unet = random_unet();
  const size_t params_before = unet->named_parameters().size();
  UNetLora lora = attach_lora(*unet, 4, 8, at::TensorOptions().dtype(at::kFloat));
  int attentions = 0;
  for (const auto& m : unet->named_modules("", false))
    if (dynamic_cast<AttentionImpl*>(m.value().get())) ++attentions;
  EXPECT_EQ(lora.sites().size(), static_cast<size_t>(attentions) * 4);
  EXPECT_EQ(unet->named_parameters().size(), params_before) << "adapters are not registered UNet parameters";
  EXPECT_EQ(lora.sites()[0].projection, "to_q");
  EXPECT_EQ(lora.sites()[3].projection, "to_out.0");
  const auto& first = *lora.sites()[0].adapter;
  EXPECT_EQ(first.down.sizes(), (at::IntArrayRef{4, 16})) << "down_blocks.1 works at 16 channels";
  EXPECT_DOUBLE_EQ(first.scale, 2.0);
  EXPECT_THROW(attach_lora(*unet, 4, 4, at::TensorOptions()), Error) << "twice";
  detach_lora(*unet);
}

TEST(Lora, InitialisedAdaptersChangeNothingAndAStdOfOneOverRank) {
  UNet unet = random_unet();
  at::manual_seed(1);
  at::Tensor x = at::randn({1, 4, 8, 8}), t = at::tensor({500.0}), ctx = at::randn({1, 5, 12}), te = at::randn({1, 8}),
             ids = at::randn({1, 6});
  at::NoGradGuard no_grad;
  at::Tensor base = unet->forward(x, t, ctx, te, ids);
  UNetLora lora = attach_lora(*unet, 8, 8, at::TensorOptions().dtype(at::kFloat));
  lora.initialize(3);
  EXPECT_TRUE(at::equal(unet->forward(x, t, ctx, te, ids), base)) << "B = 0: training starts from the base model";
  at::Tensor all_a = at::cat({lora.sites()[0].adapter->down.flatten(), lora.sites()[4].adapter->down.flatten()});
  EXPECT_NEAR(all_a.std().item<double>(), 1.0 / 8, 0.03);
  detach_lora(*unet);
  UNetLora lora2 = attach_lora(*unet, 8, 8, at::TensorOptions().dtype(at::kFloat));
  lora2.initialize(3);
  EXPECT_TRUE(at::equal(lora2.sites()[5].adapter->down, lora.sites()[5].adapter->down)) << "same seed, same A";
  detach_lora(*unet);
}

TEST(Lora, EqualsTheMergedWeight) {
  Attention attn(16, 12, 2, 8, false, at::TensorOptions().dtype(at::kFloat));
  at::NoGradGuard no_grad;
  at::manual_seed(2);
  for (auto& p : attn->parameters()) p.normal_(0, 0.3);
  at::Tensor x = at::randn({2, 10, 16}), ctx = at::randn({2, 5, 12});
  auto adapter = [](int64_t in, int64_t out) {
    auto a = std::make_shared<LoraAdapter>();
    a->down = at::randn({3, in});
    a->up = at::randn({out, 3});
    a->scale = 0.7;
    return a;
  };
  attn->lora_q = adapter(16, 16), attn->lora_k = adapter(12, 16), attn->lora_v = adapter(12, 16), attn->lora_out = adapter(16, 16);
  at::Tensor with_lora = attn->forward(x, ctx);
  // The merged weights in float64, so that the reference carries no fp32 rounding of its own:
  // the difference is the fp32 LoRA path's alone, whichever CPU kernels compute it.
  Attention merged(16, 12, 2, 8, false, at::TensorOptions().dtype(at::kDouble));
  for (auto [dst, src, a] : {std::make_tuple(merged->to_q, attn->to_q, attn->lora_q), std::make_tuple(merged->to_k, attn->to_k, attn->lora_k),
                            std::make_tuple(merged->to_v, attn->to_v, attn->lora_v), std::make_tuple(merged->to_out, attn->to_out, attn->lora_out)}) {
    dst->weight.copy_(src->weight.to(at::kDouble) + a->scale * at::matmul(a->up.to(at::kDouble), a->down.to(at::kDouble)));
    if (src->bias.defined()) dst->bias.copy_(src->bias);
  }
  const double diff = testing_util::scaled_diff(with_lora, merged->forward(x.to(at::kDouble), ctx.to(at::kDouble)));
  // Measured 5.5e-7 natively (AVX-512) and with avx2, 1.5e-7 with ATen's default kernels (the
  // merged fp32 weight it replaced measured 1.08e-6 against the LoRA path on AVX-512 and AVX2).
  EXPECT_MEASURED_BELOW("LoRA vs the float64 merged weight (scaled)", diff, 2e-6);
}

TEST(Lora, WeightsThatDoNotFitAreNamed) {
  UNet unet = random_unet();
  std::vector<LoraTensors> bad{{"down_blocks.1.attentions.0.transformer_blocks.0.attn1", "to_q", at::zeros({4, 9}),
                                at::zeros({8, 4}), 1.0},
                               {"down_blocks.7.attn1", "to_q", at::zeros({4, 8}), at::zeros({8, 4}), 1.0}};
  EXPECT_THAT([&] { attach_lora_weights(*unet, bad, at::TensorOptions()); },
              ::testing::ThrowsMessage<Error>(
                  ::testing::AllOf(::testing::HasSubstr("2 of 2 adapters do not fit this UNet"),
                                   ::testing::HasSubstr("transformer_blocks.0.attn1.to_q (down [4, 9]"),
                                   ::testing::HasSubstr("down_blocks.7.attn1.to_q (no such attention projection)"))));
}

// Note [LoRA's product in bf16]: the product in bf16 from fp32 masters is the fp32 product to
// bf16's rounding, for one adapter and for a group, on a bf16 input (a GPU's UNet) and an fp32 one;
// A's and B's gradients come back in fp32, x's in x's dtype; without gradients the same values.
TEST(Lora, ABf16ProductIsTheFp32ProductToBf16Rounding) {
  at::Generator g = at::make_generator<at::CPUGeneratorImpl>(31);
  double worst = 0;
  for (at::ScalarType x_dtype : {at::kBFloat16, at::kFloat}) {
    for (int64_t n : {1, 3}) {
      SCOPED_TRACE(::testing::Message() << "input " << x_dtype << " adapters " << n);
      std::vector<LoraAdapter> adapters(n);
      std::vector<at::Tensor> ws, gys;
      for (int64_t i = 0; i < n; ++i) {
        adapters[i].down = at::randn({4, 24}, g).requires_grad_(true);
        adapters[i].up = at::randn({40, 4}, g).requires_grad_(true);
        adapters[i].scale = 0.5;
        ws.push_back(at::randn({40, 24}, g).to(x_dtype));
        gys.push_back(at::randn({2, 7, 40}, g).to(x_dtype));
      }
      const at::Tensor x0 = at::randn({2, 7, 24}, g).to(x_dtype);
      const auto run = [&](at::ScalarType product) {
        at::Tensor x = x0.clone().requires_grad_(true);
        std::vector<at::Tensor> ys, outs;
        std::vector<const LoraAdapter*> group;
        for (int64_t i = 0; i < n; ++i) {
          adapters[i].product = product;
          ys.push_back(at::linear(x, ws[i]));
          group.push_back(&adapters[i]);
        }
        outs = n == 1 ? std::vector<at::Tensor>{adapters[0].add_to(ys[0], x)} : add_lora_group(ys, x, group);
        torch::autograd::backward(outs, gys);
        std::vector<at::Tensor> r{x.grad()};
        for (auto& o : outs) r.push_back(o.detach());
        for (auto& a : adapters) {
          EXPECT_EQ(a.down.grad().scalar_type(), at::kFloat);
          EXPECT_EQ(a.up.grad().scalar_type(), at::kFloat);
          r.push_back(a.down.grad()), r.push_back(a.up.grad());
          a.down.mutable_grad() = at::Tensor();
          a.up.mutable_grad() = at::Tensor();
        }
        at::NoGradGuard no_grad;
        r.push_back(adapters[0].add_to(at::linear(x0, ws[0]), x0));
        return r;
      };
      const std::vector<at::Tensor> fp32 = run(at::ScalarType::Undefined), bf16 = run(at::kBFloat16);
      ASSERT_EQ(fp32.size(), bf16.size());
      EXPECT_EQ(bf16[0].scalar_type(), x_dtype);
      for (size_t i = 0; i < fp32.size(); ++i) {
        EXPECT_EQ(bf16[i].scalar_type(), fp32[i].scalar_type()) << "result " << i;
        const double scale = fp32[i].to(at::kFloat).abs().max().item<double>();
        ASSERT_GT(scale, 0) << "result " << i;
        const double err = (bf16[i].to(at::kFloat) - fp32[i].to(at::kFloat)).abs().max().item<double>() / scale;
        EXPECT_LT(err, 3e-2) << "result " << i;  // a few times the largest measured
        EXPECT_GT(err, 0) << "result " << i << ": the product did not run in bf16";
        worst = std::max(worst, err);
      }
    }
  }
  std::printf("[ measured ] LoRA product in bf16 against fp32: largest relative difference %.3g\n", worst);
}

}  // namespace
}  // namespace xltune

namespace xltune {
namespace {

// Note [LoRA's own backward]: the one-node adapter gives the composition's values and gradients
// bit for bit: fp32 and bf16 inputs (the UNet's dtype on a GPU, the adapter in fp32), a scale of 1
// (alpha = rank, the default) and another, an input that needs a gradient and one that does not.
TEST(Lora, TheAdaptersOwnBackwardIsAutogradsBitForBit) {
  at::Generator g = at::make_generator<at::CPUGeneratorImpl>(21);
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    for (double scale : {1.0, 0.375}) {
      for (bool x_grad : {true, false}) {
        SCOPED_TRACE(::testing::Message() << "dtype " << dtype << " scale " << scale << " x_grad " << x_grad);
        LoraAdapter a;
        a.down = at::randn({4, 24}, g).requires_grad_(true);
        a.up = at::randn({40, 4}, g).requires_grad_(true);
        a.scale = scale;
        const at::Tensor w = at::randn({40, 24}, g).to(dtype);
        const at::Tensor x0 = at::randn({2, 7, 24}, g).to(dtype);
        const at::Tensor gy = at::randn({2, 7, 40}, g).to(dtype);
        struct Grads {
          at::Tensor out, x, down, up;
        };
        const auto run = [&](bool own) {
          at::Tensor x = x0.clone().requires_grad_(x_grad);
          const at::Tensor y = at::linear(x, w);
          const at::Tensor out = own ? a.add_to(y, x) : y + a.delta(x);
          out.backward(gy);
          // The gradients as AccumulateGrad keeps them: their layout too (a transposed one is copied).
          Grads r{out.detach(), x_grad ? x.grad() : at::Tensor(), a.down.grad(), a.up.grad()};
          a.down.mutable_grad() = at::Tensor();
          a.up.mutable_grad() = at::Tensor();
          return r;
        };
        const Grads composed = run(false), own = run(true);
        EXPECT_TRUE(at::equal(own.out, composed.out));
        EXPECT_TRUE(at::equal(own.down, composed.down));
        EXPECT_TRUE(at::equal(own.up, composed.up));
        EXPECT_EQ(own.down.strides(), composed.down.strides());
        EXPECT_EQ(own.up.strides(), composed.up.strides());
        if (x_grad) {
          EXPECT_TRUE(at::equal(own.x, composed.x));
        }
        EXPECT_GT(own.up.abs().max().item<double>(), 0);
        EXPECT_EQ(own.down.scalar_type(), at::kFloat);
      }
    }
  }
  // Without gradients it is the composition too (generation, validation).
  LoraAdapter a;
  a.down = at::randn({4, 24}, g);
  a.up = at::randn({40, 4}, g);
  const at::Tensor x = at::randn({3, 24}, g), y = at::randn({3, 40}, g);
  at::NoGradGuard no_grad;
  EXPECT_TRUE(at::equal(a.add_to(y, x), y + a.delta(x)));
}


// Note [LoRA's shared down-projection]: the group's outputs and gradients are each adapter's own,
// to the rounding of a GEMM over the concatenated A's (the sums run in another order).
TEST(Lora, AGroupOfAdaptersOfOneInputIsEachAdapterToRounding) {
  at::Generator g = at::make_generator<at::CPUGeneratorImpl>(22);
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    // Bounds a few times the largest relative error measured (fp32 ~2e-7, bf16 ~4e-3).
    const double bound = dtype == at::kFloat ? 1e-6 : 2e-2;
    for (int64_t n : {2, 3}) {
      SCOPED_TRACE(::testing::Message() << "dtype " << dtype << " adapters " << n);
      std::vector<LoraAdapter> adapters(n);
      std::vector<at::Tensor> ws;
      for (int64_t i = 0; i < n; ++i) {
        adapters[i].down = at::randn({4, 24}, g).requires_grad_(true);
        adapters[i].up = at::randn({40 + 8 * i, 4}, g).requires_grad_(true);
        adapters[i].scale = i == 1 ? 0.375 : 1.0;
        ws.push_back(at::randn({40 + 8 * i, 24}, g).to(dtype));
      }
      const at::Tensor x0 = at::randn({2, 7, 24}, g).to(dtype);
      std::vector<at::Tensor> gys;
      for (int64_t i = 0; i < n; ++i) gys.push_back(at::randn({2, 7, 40 + 8 * i}, g).to(dtype));
      const auto run = [&](bool grouped) {
        at::Tensor x = x0.clone().requires_grad_(true);
        std::vector<at::Tensor> ys, outs;
        std::vector<const LoraAdapter*> group;
        for (int64_t i = 0; i < n; ++i) ys.push_back(at::linear(x, ws[i])), group.push_back(&adapters[i]);
        if (grouped) {
          outs = add_lora_group(ys, x, group);
        } else {
          for (int64_t i = 0; i < n; ++i) outs.push_back(adapters[i].add_to(ys[i], x));
        }
        torch::autograd::backward(outs, gys);
        std::vector<at::Tensor> r{x.grad()};
        for (auto& o : outs) r.push_back(o.detach());
        for (auto& a : adapters) {
          r.push_back(a.down.grad()), r.push_back(a.up.grad());
          a.down.mutable_grad() = at::Tensor();
          a.up.mutable_grad() = at::Tensor();
        }
        return r;
      };
      const std::vector<at::Tensor> each = run(false), grouped = run(true);
      ASSERT_EQ(each.size(), grouped.size());
      double worst = 0;
      for (size_t i = 0; i < each.size(); ++i) {
        ASSERT_TRUE(grouped[i].defined()) << "result " << i;
        EXPECT_EQ(grouped[i].scalar_type(), each[i].scalar_type()) << "result " << i;
        EXPECT_EQ(grouped[i].sizes(), each[i].sizes()) << "result " << i;
        const double scale = each[i].to(at::kFloat).abs().max().item<double>();
        ASSERT_GT(scale, 0) << "result " << i;
        const double err = (grouped[i].to(at::kFloat) - each[i].to(at::kFloat)).abs().max().item<double>() / scale;
        EXPECT_LT(err, bound) << "result " << i;
        worst = std::max(worst, err);
      }
      std::printf("[ measured ] LoRA group of %ld, %s: largest relative difference %.3g\n", static_cast<long>(n),
                  c10::toString(dtype), worst);
    }
  }
  // Without gradients each adapter's add_to, exactly.
  LoraAdapter a, b;
  a.down = at::randn({4, 24}, g), a.up = at::randn({40, 4}, g);
  b.down = at::randn({4, 24}, g), b.up = at::randn({32, 4}, g);
  const at::Tensor x = at::randn({3, 24}, g), ya = at::randn({3, 40}, g), yb = at::randn({3, 32}, g);
  at::NoGradGuard no_grad;
  const auto outs = add_lora_group({ya, yb}, x, {&a, &b});
  EXPECT_TRUE(at::equal(outs[0], a.add_to(ya, x)));
  EXPECT_TRUE(at::equal(outs[1], b.add_to(yb, x)));
}

}  // namespace
}  // namespace xltune
