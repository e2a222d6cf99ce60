// The config.json files of real checkpoints users hold (their Hub 4.x form, values as published), read by matq: each
// parses, and matq's description gives the published parameter count and the family features — Llama 3.1 8B and 3.2 1B
// (llama3 rope), Qwen 2.5 7B (q/k/v bias, sliding_window present but off), Gemma 2 9B (soft-caps, alternating windows,
// query_pre_attn_scalar, tied), Mistral 7B v0.3 (no window), Phi-3 mini 4k (fused projections, window 2047).
using Matq.Loading;
using Matq.Models;
using Matq.Runtime.Loading;
using Matq.Runtime.Models;

namespace Matq.Tests.Loading;

public sealed class RealConfigsTests
{
    private const string Llama31_8B = RealConfigs.Llama31_8B;
    private const string Llama32_1B = RealConfigs.Llama32_1B;
    private const string Qwen25_7B = RealConfigs.Qwen25_7B;
    private const string Gemma2_9B = RealConfigs.Gemma2_9B;
    private const string Mistral7B_v03 = RealConfigs.Mistral7B_v03;
    private const string Phi3_Mini_4k = RealConfigs.Phi3_Mini_4k;

    public static TheoryData<string, string, long> Configs() => new()
    {
        { "Llama-3.1-8B", Llama31_8B, 8_030_261_248 },
        { "Llama-3.2-1B", Llama32_1B, 1_235_814_400 },
        { "Qwen2.5-7B", Qwen25_7B, 7_615_616_512 },
        { "gemma-2-9b", Gemma2_9B, 9_241_705_984 },
        { "Mistral-7B-v0.3", Mistral7B_v03, 7_248_023_552 },
        { "Phi-3-mini-4k", Phi3_Mini_4k, 3_821_079_552 },
    };

    [Theory]
    [MemberData(nameof(Configs))]
    public void Real_configs_parse_to_their_published_parameter_counts(string name, string json, long parameters)
    {
        var c = HfLlamaConfig.Parse(json, name + "/config.json");
        Assert.Equal(parameters, c.ParameterCount());
        // the description round-trips through the artifact's model_config
        Assert.True(c.Equals(HfLlamaConfig.Parse(HfLlamaConfig.ToJson(c), name)), name);
        switch (name)
        {
            case "Llama-3.1-8B" or "Llama-3.2-1B":
                Assert.Equal(RopeScaling.Llama3, c.RopeScaling);
                Assert.Null(c.SlidingWindow);
                break;
            case "Qwen2.5-7B":
                Assert.True(c.QkvBias);
                Assert.Null(c.WindowOf(0));   // use_sliding_window false
                break;
            case "gemma-2-9b":
                Assert.Equal(4096, c.WindowOf(0));
                Assert.Null(c.WindowOf(1));   // alternating local/global
                Assert.Equal(50.0, c.AttnLogitSoftcap);
                Assert.Equal(30.0, c.FinalLogitSoftcap);
                Assert.True(c.TieWordEmbeddings);
                break;
            case "Mistral-7B-v0.3":
                Assert.Null(c.SlidingWindow);
                break;
            case "Phi-3-mini-4k":
                Assert.Equal(2047, c.WindowOf(0));
                break;
        }
    }
}
