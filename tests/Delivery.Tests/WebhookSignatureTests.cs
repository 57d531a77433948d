using System.Text.Json;
using Crm.Delivery.Features.Webhooks;

namespace Crm.Delivery.Tests;

/// <summary>
/// The Standard Webhooks peer vectors (data/standard_webhooks_vectors.json, from the specification's
/// reference libraries): first the test's own verifier agrees with every one, then the service's signer does.
/// </summary>
public sealed class WebhookSignatureTests
{
    private static readonly JsonElement Vectors = JsonDocument.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "data", "standard_webhooks_vectors.json"))).RootElement;

    private static string? Header(JsonElement c, string name) => c.GetProperty("headers").GetProperty(name).GetString();

    [Fact]
    public void Should_agree_with_every_verify_vector_in_the_independent_verifier()
    {
        var cases = Vectors.GetProperty("verifyCases").EnumerateArray().ToList();
        Assert.True(cases.Count >= 15);
        foreach (var c in cases)
        {
            var why = StandardWebhooksVerifier.Verify(c.GetProperty("secret").GetString()!, Header(c, "webhook-id"), Header(c, "webhook-timestamp"),
                Header(c, "webhook-signature"), c.GetProperty("payload").GetString()!, c.GetProperty("now").GetInt64());
            Assert.True(c.GetProperty("expectedValid").GetBoolean() == (why is null), $"{c.GetProperty("name").GetString()}: {why ?? "valid"}");
        }
    }

    [Fact]
    public void Should_treat_secrets_as_the_vectors_say()
    {
        foreach (var c in Vectors.GetProperty("secretCases").EnumerateArray())
        {
            var secret = c.GetProperty("secret").GetString()!;
            if (c.TryGetProperty("expectedError", out _))
                Assert.Throws<ArgumentException>(() => StandardWebhooksVerifier.KeyOf(secret));
            else
                Assert.Equal(Convert.FromBase64String(c.GetProperty("equivalentPaddedSecret").GetString()!), StandardWebhooksVerifier.KeyOf(secret));
        }
    }

    [Fact]
    public void Should_sign_every_sign_vector_as_the_reference_libraries_do()
    {
        var cases = Vectors.GetProperty("signCases").EnumerateArray().ToList();
        Assert.NotEmpty(cases);
        foreach (var c in cases)
        {
            var (secret, id, ts, payload) = (c.GetProperty("secret").GetString()!, c.GetProperty("msgId").GetString()!, c.GetProperty("timestamp").GetInt64(), c.GetProperty("payload").GetString()!);
            var expected = c.GetProperty("expectedSignature").GetString();
            // Both sides: the independent verifier accepts the expected signature, and the service's signer produces it.
            Assert.Null(StandardWebhooksVerifier.Verify(secret, id, ts.ToString(System.Globalization.CultureInfo.InvariantCulture), expected, payload, ts));
            Assert.Equal(expected, WebhookSignature.Sign(WebhookSignature.Key(secret), id, ts, payload));
        }
    }

    [Fact]
    public void Should_sign_with_both_keys_during_a_rotation_each_verifying_alone()
    {
        var (old, current) = (WebhookSignature.NewSecret(), WebhookSignature.NewSecret());
        Assert.StartsWith("whsec_", current);
        Assert.Equal(32, StandardWebhooksVerifier.KeyOf(current).Length);
        const string body = """{"type":"message.sent"}""";
        var header = WebhookSignature.Header([WebhookSignature.Key(current), WebhookSignature.Key(old)], "msg_1", 1_700_000_000, body);
        Assert.Equal(2, header.Split(' ').Length);
        Assert.Null(StandardWebhooksVerifier.Verify(old, "msg_1", "1700000000", header, body, 1_700_000_000));
        Assert.Null(StandardWebhooksVerifier.Verify(current, "msg_1", "1700000000", header, body, 1_700_000_000));
        Assert.NotNull(StandardWebhooksVerifier.Verify(WebhookSignature.NewSecret(), "msg_1", "1700000000", header, body, 1_700_000_000));
    }
}
