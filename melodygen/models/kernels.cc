// TensorFlow CPU ops for training the Melody RNN networks faster: a whole LSTM
// layer's recurrence (forward and backward), and dropout.
//
// Why the LSTM ops: on a CPU, TensorFlow's own loop pays a few microseconds of dispatch for
// every small op of every step (about 20 per layer and step), and its element-wise
// gate math is a dozen passes over memory. Here each step is one Eigen GEMM plus
// one fused pass, and the batch is cut into independent row chunks that run on
// their own threads (the recurrence never mixes rows), the input projection
// included. What is not sequential in the gradient (the weight gradients, sums
// over every step, and the inputs' gradient) stays in TensorFlow as big matmuls;
// see kernels.py.
//
// Gate layout is Keras': columns [i, f, c, o] of width H, sigmoid for i, f, o,
// tanh for c and for the cell output. Sequences are batch-major ([batch, time,
// ...], Keras' layout), so layers pass them on without transposes; a step reads
// its rows with a stride.
//
// Why the dropout op: TensorFlow draws dropout's random numbers with Philox, 32
// bits each, on one core; for a [64, 430, 128] activation that is 19 ms, about
// half a layer's recurrence. Here 16 bits decide each element, drawn with
// splitmix64 from a counter (seed, batch row, position: results do not depend
// on the number of threads), and the rows are split over threads.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <thread>
#include <vector>

#include "Eigen/Core"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace {

using tensorflow::DEVICE_CPU;
using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Tensor;
using tensorflow::TensorShape;
using tensorflow::errors::InvalidArgument;
using tensorflow::shape_inference::DimensionHandle;
using tensorflow::shape_inference::InferenceContext;
using tensorflow::shape_inference::ShapeHandle;

using Matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstMatrixMap = Eigen::Map<const Matrix>;
using MatrixMap = Eigen::Map<Matrix>;
using Stride = Eigen::OuterStride<>;

// One step's rows [begin, begin + rows) of a [batch, steps, cols] tensor.
class Steps {
 public:
  Steps(int64_t begin, int64_t rows, int64_t steps) : begin_(begin), rows_(rows), steps_(steps) {}

  Eigen::Map<Matrix, 0, Stride> at(float* data, int64_t t, int64_t cols) const {
    return {data + (begin_ * steps_ + t) * cols, rows_, cols, Stride(steps_ * cols)};
  }
  Eigen::Map<const Matrix, 0, Stride> at(const float* data, int64_t t, int64_t cols) const {
    return {data + (begin_ * steps_ + t) * cols, rows_, cols, Stride(steps_ * cols)};
  }

 private:
  int64_t begin_, rows_, steps_;
};

// Runs fn(row_begin, row_end) for up to `threads` contiguous chunks of `rows` rows.
template <typename Fn>
void ForEachRowChunk(int64_t rows, int threads, Fn fn) {
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(threads, rows));
  const int64_t size = (rows + chunks - 1) / chunks;
  std::vector<std::thread> workers;
  for (int64_t begin = size; begin < rows; begin += size) {
    workers.emplace_back(fn, begin, std::min(rows, begin + size));
  }
  fn(0, std::min(rows, size));
  for (auto& worker : workers) worker.join();
}

bool IsMatrix(const Tensor& tensor, int64_t rows, int64_t cols) {
  return tensor.dims() == 2 && tensor.dim_size(0) == rows && tensor.dim_size(1) == cols;
}

bool IsSequence(const Tensor& tensor, int64_t batch, int64_t steps, int64_t cols) {
  return tensor.dims() == 3 && tensor.dim_size(0) == batch && tensor.dim_size(1) == steps &&
         tensor.dim_size(2) == cols;
}

}  // namespace

REGISTER_OP("MelodyLstmSequence")
    .Input("inputs: float")            // [B, T, F]
    .Input("kernel: float")            // [F, 4H]
    .Input("recurrent_kernel: float")  // [H, 4H]
    .Input("bias: float")              // [4H]
    .Input("h0: float")                // [B, H]
    .Input("c0: float")                // [B, H]
    .Output("h: float")                // [B, T, H]: the layer's output
    .Output("h_prev: float")           // [B, T, H]: h one step late (h0 first), for gradients
    .Output("c: float")                // [B, T, H]
    .Output("gates: float")            // [B, T, 4H], activated
    .Output("h_last: float")           // [B, H]
    .Output("c_last: float")           // [B, H]
    .Attr("num_threads: int = 2")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle inputs, recurrent;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 3, &inputs));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(2), 2, &recurrent));
      DimensionHandle batch = c->Dim(inputs, 0), time = c->Dim(inputs, 1);
      DimensionHandle units = c->Dim(recurrent, 0), width = c->Dim(recurrent, 1);
      ShapeHandle sequence = c->MakeShape({batch, time, units});
      c->set_output(0, sequence);
      c->set_output(1, sequence);
      c->set_output(2, sequence);
      c->set_output(3, c->MakeShape({batch, time, width}));
      c->set_output(4, c->MakeShape({batch, units}));
      c->set_output(5, c->MakeShape({batch, units}));
      return tensorflow::OkStatus();
    });

REGISTER_OP("MelodyLstmSequenceGrad")
    .Input("recurrent_kernel: float")  // [H, 4H]
    .Input("c0: float")                // [B, H]
    .Input("c: float")                 // [B, T, H] from the forward op
    .Input("gates: float")             // [B, T, 4H] from the forward op
    .Input("d_h: float")               // [B, T, H]: gradient reaching every step's h from above
    .Input("d_h_last: float")          // [B, H]
    .Input("d_c_last: float")          // [B, H]
    .Output("d_gates: float")          // [B, T, 4H]: gradient of the gate pre-activations
    .Output("d_bias: float")           // [4H]: d_gates summed over batch and time
    .Output("d_h0: float")
    .Output("d_c0: float")
    .Attr("num_threads: int = 2")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle recurrent;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 2, &recurrent));
      c->set_output(0, c->input(3));
      c->set_output(1, c->Vector(c->Dim(recurrent, 1)));
      c->set_output(2, c->input(1));
      c->set_output(3, c->input(1));
      return tensorflow::OkStatus();
    });

class MelodyLstmSequenceOp : public OpKernel {
 public:
  explicit MelodyLstmSequenceOp(OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, context->GetAttr("num_threads", &num_threads_));
  }

  void Compute(OpKernelContext* context) override {
    const Tensor& inputs = context->input(0);
    const Tensor& kernel_in = context->input(1);
    const Tensor& recurrent = context->input(2);
    const Tensor& bias_in = context->input(3);
    const Tensor& h0 = context->input(4);
    const Tensor& c0 = context->input(5);
    OP_REQUIRES(context, inputs.dims() == 3, InvalidArgument("inputs must be [batch, time, features]"));
    const int64_t batch = inputs.dim_size(0), steps = inputs.dim_size(1);
    const int64_t features = inputs.dim_size(2), units = recurrent.dim_size(0), width = 4 * units;
    OP_REQUIRES(context, IsMatrix(recurrent, units, width),
                InvalidArgument("recurrent kernel must be [units, 4 * units]"));
    OP_REQUIRES(context, IsMatrix(kernel_in, features, width),
                InvalidArgument("kernel must be [features, 4 * units]"));
    OP_REQUIRES(context, bias_in.dims() == 1 && bias_in.dim_size(0) == width,
                InvalidArgument("bias must be [4 * units]"));
    OP_REQUIRES(context, IsMatrix(h0, batch, units) && IsMatrix(c0, batch, units),
                InvalidArgument("initial states must be [batch, units]"));

    Tensor *h_out, *h_prev_out, *c_out, *gates_out, *h_last, *c_last;
    const TensorShape sequence({batch, steps, units});
    OP_REQUIRES_OK(context, context->allocate_output(0, sequence, &h_out));
    OP_REQUIRES_OK(context, context->allocate_output(1, sequence, &h_prev_out));
    OP_REQUIRES_OK(context, context->allocate_output(2, sequence, &c_out));
    OP_REQUIRES_OK(context,
                   context->allocate_output(3, TensorShape({batch, steps, width}), &gates_out));
    OP_REQUIRES_OK(context, context->allocate_output(4, h0.shape(), &h_last));
    OP_REQUIRES_OK(context, context->allocate_output(5, c0.shape(), &c_last));

    const float* x = inputs.flat<float>().data();
    ConstMatrixMap kernel(kernel_in.flat<float>().data(), features, width);
    ConstMatrixMap recurrent_kernel(recurrent.flat<float>().data(), units, width);
    const Eigen::Map<const Eigen::RowVectorXf> bias(bias_in.flat<float>().data(), width);
    float* h_all = h_out->flat<float>().data();
    float* h_prev_all = h_prev_out->flat<float>().data();
    float* c_all = c_out->flat<float>().data();
    float* gates_all = gates_out->flat<float>().data();

    ForEachRowChunk(batch, num_threads_, [&](int64_t begin, int64_t end) {
      const int64_t rows = end - begin;
      const Steps step(begin, rows, steps);
      Matrix h = ConstMatrixMap(h0.flat<float>().data() + begin * units, rows, units);
      Matrix c = ConstMatrixMap(c0.flat<float>().data() + begin * units, rows, units);
      Matrix z(rows, width);
      // The input projection of all of this chunk's steps at once (its rows of x are
      // contiguous), written where the gates go: one big GEMM instead of a thin one per
      // step, which for one-hot inputs (a few dozen features) ran at half speed.
      MatrixMap projected(gates_all + begin * steps * width, rows * steps, width);
      projected.noalias() = ConstMatrixMap(x + begin * steps * features, rows * steps, features) * kernel;
      projected.rowwise() += bias;
      for (int64_t t = 0; t < steps; ++t) {
        step.at(h_prev_all, t, units) = h;
        auto gates = step.at(gates_all, t, width);
        z.noalias() = h * recurrent_kernel;
        z += gates;
        gates.leftCols(2 * units) = z.leftCols(2 * units).array().logistic();
        gates.middleCols(2 * units, units) = z.middleCols(2 * units, units).array().tanh();
        gates.rightCols(units) = z.rightCols(units).array().logistic();
        c.array() = gates.middleCols(units, units).array() * c.array() +
                    gates.leftCols(units).array() * gates.middleCols(2 * units, units).array();
        h.array() = gates.rightCols(units).array() * c.array().tanh();
        step.at(c_all, t, units) = c;
        step.at(h_all, t, units) = h;
      }
      MatrixMap(h_last->flat<float>().data() + begin * units, rows, units) = h;
      MatrixMap(c_last->flat<float>().data() + begin * units, rows, units) = c;
    });
  }

 private:
  int num_threads_;
};

class MelodyLstmSequenceGradOp : public OpKernel {
 public:
  explicit MelodyLstmSequenceGradOp(OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, context->GetAttr("num_threads", &num_threads_));
  }

  void Compute(OpKernelContext* context) override {
    const Tensor& recurrent = context->input(0);
    const Tensor& c0 = context->input(1);
    const Tensor& c_seq = context->input(2);
    const Tensor& gates_seq = context->input(3);
    const Tensor& d_h_seq = context->input(4);
    const Tensor& d_h_last = context->input(5);
    const Tensor& d_c_last = context->input(6);
    OP_REQUIRES(context, gates_seq.dims() == 3, InvalidArgument("gates must be [batch, time, 4 * units]"));
    const int64_t batch = gates_seq.dim_size(0), steps = gates_seq.dim_size(1);
    const int64_t units = recurrent.dim_size(0), width = 4 * units;
    OP_REQUIRES(context, IsMatrix(recurrent, units, width) && gates_seq.dim_size(2) == width,
                InvalidArgument("recurrent kernel must be [units, 4 * units], as the gates"));
    OP_REQUIRES(context,
                IsSequence(c_seq, batch, steps, units) && IsSequence(d_h_seq, batch, steps, units),
                InvalidArgument("c and d_h must be [batch, time, units]"));
    OP_REQUIRES(context,
                IsMatrix(c0, batch, units) && IsMatrix(d_h_last, batch, units) &&
                    IsMatrix(d_c_last, batch, units),
                InvalidArgument("c0 and the final-state gradients must be [batch, units]"));

    Tensor *d_gates, *d_bias, *d_h0, *d_c0;
    OP_REQUIRES_OK(context, context->allocate_output(0, gates_seq.shape(), &d_gates));
    OP_REQUIRES_OK(context, context->allocate_output(1, TensorShape({width}), &d_bias));
    OP_REQUIRES_OK(context, context->allocate_output(2, c0.shape(), &d_h0));
    OP_REQUIRES_OK(context, context->allocate_output(3, c0.shape(), &d_c0));
    // Each chunk sums its own rows' bias gradient; the chunks' sums are added at the end.
    const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(num_threads_, batch));
    const int64_t chunk_rows = (batch + chunks - 1) / chunks;
    Matrix bias_sums = Matrix::Zero(chunks, width);

    // The transpose kept row-major, so that each step's GEMM streams rows.
    const Matrix recurrent_t =
        ConstMatrixMap(recurrent.flat<float>().data(), units, width).transpose();
    const float* c_all = c_seq.flat<float>().data();
    const float* gates_all = gates_seq.flat<float>().data();
    const float* d_h_all = d_h_seq.flat<float>().data();
    float* dz_all = d_gates->flat<float>().data();

    ForEachRowChunk(batch, num_threads_, [&](int64_t begin, int64_t end) {
      const int64_t rows = end - begin;
      const Steps step(begin, rows, steps);
      Matrix dh_next = ConstMatrixMap(d_h_last.flat<float>().data() + begin * units, rows, units);
      Matrix dc = ConstMatrixMap(d_c_last.flat<float>().data() + begin * units, rows, units);
      const Matrix c_first = ConstMatrixMap(c0.flat<float>().data() + begin * units, rows, units);
      Eigen::ArrayXXf dh(rows, units), tanh_c(rows, units);
      Eigen::RowVectorXf bias_sum = Eigen::RowVectorXf::Zero(width);
      for (int64_t t = steps - 1; t >= 0; --t) {
        const auto c = step.at(c_all, t, units).array();
        const auto gates = step.at(gates_all, t, width);
        const auto i = gates.leftCols(units).array();
        const auto f = gates.middleCols(units, units).array();
        const auto g = gates.middleCols(2 * units, units).array();
        const auto o = gates.rightCols(units).array();
        auto dz = step.at(dz_all, t, width);

        dh = step.at(d_h_all, t, units).array() + dh_next.array();
        tanh_c = c.tanh();
        dc.array() += dh * o * (1.0f - tanh_c.square());
        if (t > 0) {
          dz.middleCols(units, units).array() =
              dc.array() * step.at(c_all, t - 1, units).array() * f * (1.0f - f);
        } else {
          dz.middleCols(units, units).array() = dc.array() * c_first.array() * f * (1.0f - f);
        }
        dz.leftCols(units).array() = dc.array() * g * i * (1.0f - i);
        dz.middleCols(2 * units, units).array() = dc.array() * i * (1.0f - g.square());
        dz.rightCols(units).array() = dh * tanh_c * o * (1.0f - o);
        dc.array() *= f;
        dh_next.noalias() = dz * recurrent_t;
        bias_sum += dz.colwise().sum();
      }
      bias_sums.row(begin / chunk_rows) = bias_sum;
      MatrixMap(d_h0->flat<float>().data() + begin * units, rows, units) = dh_next;
      MatrixMap(d_c0->flat<float>().data() + begin * units, rows, units) = dc;
    });
    Eigen::Map<Eigen::RowVectorXf>(d_bias->flat<float>().data(), width) = bias_sums.colwise().sum();
  }

 private:
  int num_threads_;
};

REGISTER_OP("MelodyDropout")
    .Input("x: float")     // [B, ...]
    .Input("seed: int64")  // [2]
    .Output("y: float")    // x, each element zeroed with probability `rate` or scaled by 1/(1-rate)
    .Attr("rate: float")
    .Attr("num_threads: int = 2")
    .SetShapeFn([](InferenceContext* c) {
      c->set_output(0, c->input(0));
      return tensorflow::OkStatus();
    });

// The same seed drops the same elements, so the op is its own gradient: applied to
// the output's gradient with the forward seed, it gives the input's.
class MelodyDropoutOp : public OpKernel {
 public:
  explicit MelodyDropoutOp(OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, context->GetAttr("rate", &rate_));
    OP_REQUIRES_OK(context, context->GetAttr("num_threads", &num_threads_));
    OP_REQUIRES(context, rate_ >= 0.0f && rate_ < 1.0f, InvalidArgument("rate must be in [0, 1)"));
  }

  void Compute(OpKernelContext* context) override {
    const Tensor& x_in = context->input(0);
    const Tensor& seed_in = context->input(1);
    OP_REQUIRES(context, x_in.dims() >= 1, InvalidArgument("x must have a batch dimension"));
    OP_REQUIRES(context, seed_in.NumElements() == 2, InvalidArgument("seed must hold 2 values"));
    Tensor* y_out;
    OP_REQUIRES_OK(context, context->allocate_output(0, x_in.shape(), &y_out));
    const int64_t rows = x_in.dim_size(0);
    const int64_t width = rows > 0 ? x_in.NumElements() / rows : 0;
    const auto seed_values = seed_in.flat<int64_t>();
    const uint64_t seed = static_cast<uint64_t>(seed_values(0)) * 0x9E3779B97F4A7C15ull ^
                          static_cast<uint64_t>(seed_values(1));
    // An element is kept when its 16 random bits are at least `threshold`.
    const uint32_t threshold = static_cast<uint32_t>(std::lround(rate_ * 65536.0));
    const float keep_scale = 1.0f / (1.0f - rate_);
    const float* x = x_in.flat<float>().data();
    float* y = y_out->flat<float>().data();

    ForEachRowChunk(rows, num_threads_, [&](int64_t begin, int64_t end) {
      // 16 random bits per element, drawn 64 at a time.
      std::vector<uint64_t> words((width + 3) / 4);
      const uint16_t* bits = reinterpret_cast<const uint16_t*>(words.data());
      for (int64_t row = begin; row < end; ++row) {
        const uint64_t row_seed = seed + 0xD1B54A32D192ED03ull * static_cast<uint64_t>(row + 1);
        for (size_t w = 0; w < words.size(); ++w) {
          // splitmix64 of a counter: every draw independent, so the loop vectorizes.
          uint64_t z = row_seed + 0x9E3779B97F4A7C15ull * static_cast<uint64_t>(w + 1);
          z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
          z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
          words[w] = z ^ (z >> 31);
        }
        const float* in = x + row * width;
        float* out = y + row * width;
        for (int64_t k = 0; k < width; ++k) {
          out[k] = bits[k] >= threshold ? in[k] * keep_scale : 0.0f;
        }
      }
    });
  }

 private:
  float rate_;
  int num_threads_;
};

REGISTER_KERNEL_BUILDER(Name("MelodyDropout").Device(DEVICE_CPU), MelodyDropoutOp);
REGISTER_KERNEL_BUILDER(Name("MelodyLstmSequence").Device(DEVICE_CPU), MelodyLstmSequenceOp);
REGISTER_KERNEL_BUILDER(Name("MelodyLstmSequenceGrad").Device(DEVICE_CPU),
                        MelodyLstmSequenceGradOp);
