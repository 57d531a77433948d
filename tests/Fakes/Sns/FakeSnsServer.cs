using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;

namespace Crm.Fakes.Sns;

/// <summary>
/// Amazon SNS as an HTTPS subscriber sees it, on loopback: it signs messages (Notification, SubscriptionConfirmation)
/// the way SNS does — the canonical string of the message's fields, RSA PKCS#1 with SHA-1 (SignatureVersion 1) or
/// SHA-256 (2) — with a self-made certificate that it serves over HTTPS at <see cref="SigningCertUrl"/>, and it
/// answers SubscribeURL (recording each confirmation). The same certificate is its TLS certificate: a client trusts
/// the fake by <see cref="Certificate"/>'s thumbprint.
/// </summary>
public sealed class FakeSnsServer : IAsyncDisposable
{
    private readonly RSA _key = RSA.Create(2048);
    private readonly ConcurrentQueue<string> _confirmations = new();
    private WebApplication? _app;

    public FakeSnsServer()
    {
        var request = new CertificateRequest("CN=sns.fake.test", _key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        var san = new SubjectAlternativeNameBuilder();
        san.AddIpAddress(IPAddress.Loopback);
        san.AddDnsName("localhost");
        request.CertificateExtensions.Add(san.Build());
        using var made = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(30));
        // Through PKCS#12 so the private key is usable by the TLS stack on every platform.
        Certificate = X509CertificateLoader.LoadPkcs12(made.Export(X509ContentType.Pkcs12), null);
    }

    /// <summary>The signing (and TLS) certificate.</summary>
    public X509Certificate2 Certificate { get; }

    /// <summary>"https://127.0.0.1:{port}/", known once <see cref="StartAsync"/> returned.</summary>
    public Uri BaseUri { get; private set; } = null!;

    /// <summary>host:port, for the subscriber's list of trusted certificate hosts.</summary>
    public string Authority => BaseUri.Authority;

    public string SigningCertUrl => new Uri(BaseUri, "SimpleNotificationService-fake.pem").ToString();

    /// <summary>The tokens of the subscriptions confirmed through SubscribeURL.</summary>
    public IReadOnlyList<string> Confirmations => _confirmations.ToList();

    public async Task StartAsync()
    {
        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions());
        builder.WebHost.UseKestrelCore().ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0, o => o.UseHttps(Certificate)));
        builder.Services.AddRoutingCore();
        _app = builder.Build();
        _app.MapGet("/SimpleNotificationService-fake.pem", () => Results.Text(Certificate.ExportCertificatePem(), "application/x-pem-file"));
        _app.MapGet("/confirm", (HttpRequest r) =>
        {
            _confirmations.Enqueue(r.Query["Token"].ToString());
            return Results.Text("<ConfirmSubscriptionResponse><ConfirmSubscriptionResult><SubscriptionArn>arn</SubscriptionArn></ConfirmSubscriptionResult></ConfirmSubscriptionResponse>", "text/xml");
        });
        await _app.StartAsync();
        var address = _app.Urls.First();
        BaseUri = new Uri(address.Replace("0.0.0.0", "127.0.0.1", StringComparison.Ordinal).TrimEnd('/') + "/");
    }

    /// <summary>A signed Notification of <paramref name="topicArn"/> carrying <paramref name="message"/> (e.g. an SES notification's JSON).</summary>
    public string Notification(string topicArn, string message, string? subject = null, int signatureVersion = 2, DateTimeOffset? timestamp = null)
    {
        var fields = new Dictionary<string, string?>
        {
            ["Type"] = "Notification", ["MessageId"] = Guid.NewGuid().ToString(), ["TopicArn"] = topicArn, ["Subject"] = subject,
            ["Message"] = message, ["Timestamp"] = Time(timestamp), ["SignatureVersion"] = signatureVersion.ToString(CultureInfo.InvariantCulture),
            ["SigningCertURL"] = SigningCertUrl, ["UnsubscribeURL"] = new Uri(BaseUri, "unsubscribe").ToString(),
        };
        fields["Signature"] = Sign(fields, ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"], signatureVersion);
        return Json(fields);
    }

    /// <summary>A signed SubscriptionConfirmation whose SubscribeURL is this fake's /confirm.</summary>
    public string SubscriptionConfirmation(string topicArn, int signatureVersion = 2)
    {
        var token = Convert.ToHexString(RandomNumberGenerator.GetBytes(32)).ToLowerInvariant();
        var fields = new Dictionary<string, string?>
        {
            ["Type"] = "SubscriptionConfirmation", ["MessageId"] = Guid.NewGuid().ToString(), ["Token"] = token, ["TopicArn"] = topicArn,
            ["Message"] = $"You have chosen to subscribe to the topic {topicArn}.\nTo confirm the subscription, visit the SubscribeURL included in this message.",
            ["SubscribeURL"] = new Uri(BaseUri, $"confirm?Action=ConfirmSubscription&TopicArn={Uri.EscapeDataString(topicArn)}&Token={token}").ToString(),
            ["Timestamp"] = Time(null), ["SignatureVersion"] = signatureVersion.ToString(CultureInfo.InvariantCulture), ["SigningCertURL"] = SigningCertUrl,
        };
        fields["Signature"] = Sign(fields, ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"], signatureVersion);
        return Json(fields);
    }

    /// <summary>Posts a message to a subscriber as SNS does (text/plain JSON with the x-amz-sns-* headers).</summary>
    public static async Task<HttpResponseMessage> DeliverAsync(HttpClient client, Uri endpoint, string message)
    {
        using var doc = JsonDocument.Parse(message);
        using var request = new HttpRequestMessage(HttpMethod.Post, endpoint) { Content = new StringContent(message, Encoding.UTF8, "text/plain") };
        request.Headers.Add("x-amz-sns-message-type", doc.RootElement.GetProperty("Type").GetString());
        request.Headers.Add("x-amz-sns-message-id", doc.RootElement.GetProperty("MessageId").GetString());
        request.Headers.Add("x-amz-sns-topic-arn", doc.RootElement.GetProperty("TopicArn").GetString());
        request.Headers.UserAgent.ParseAdd("Amazon Simple Notification Service Agent");
        return await client.SendAsync(request);
    }

    private string Sign(Dictionary<string, string?> fields, string[] order, int version)
    {
        var canonical = new StringBuilder();
        foreach (var name in order)
            if (fields[name] is { } value) canonical.Append(name).Append('\n').Append(value).Append('\n');
        var hash = version == 1 ? HashAlgorithmName.SHA1 : HashAlgorithmName.SHA256;
        return Convert.ToBase64String(_key.SignData(Encoding.UTF8.GetBytes(canonical.ToString()), hash, RSASignaturePadding.Pkcs1));
    }

    private static string Time(DateTimeOffset? at) => (at ?? DateTimeOffset.UtcNow).UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture);

    private static string Json(Dictionary<string, string?> fields) =>
        JsonSerializer.Serialize(fields.Where(f => f.Value is not null).ToDictionary(f => f.Key, f => f.Value));

    public async ValueTask DisposeAsync()
    {
        if (_app is not null) await _app.DisposeAsync();
        Certificate.Dispose();
        _key.Dispose();
    }
}
